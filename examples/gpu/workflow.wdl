version 1.1

# One task on Fargate with more scratch disk than Fargate gives (an EBS volume as its TMPDIR), and
# one beyond Fargate (a GPU and 32 vCPU) that runs on the stack's ECS Managed Instances: deploy (or
# `local run --parameter ...`) with ManagedInstances=Enabled and a GPU kind in
# ManagedInstancesGpuKinds. Without them, submitting this is refused, naming the parameter.
workflow gpu {
  input {
    Int n = 1000
  }
  call prepare { input: n = n }
  call crunch { input: numbers = prepare.numbers }
  output {
    String gpu_report = crunch.gpu_report
    Int total = crunch.total
  }
}

# fits Fargate (1 vCPU, 2 GiB), with 300 GiB of disk at /mnt/data: beyond Fargate's 200 GiB of
# ephemeral storage, so an EBS volume of its own is mounted there and as its TMPDIR (sort spills there)
task prepare {
  input {
    Int n
  }
  command <<<
    set -e
    seq 1 ~{n} > /mnt/data/unsorted.txt
    sort -n -T "${TMPDIR:-/tmp}" /mnt/data/unsorted.txt > numbers.txt
  >>>
  output {
    File numbers = "numbers.txt"
  }
  runtime {
    docker: "ubuntu:22.04"
    cpu: 1
    memory: "2 GiB"
    disks: "/mnt/data 300 GiB"
  }
}

# beyond Fargate: a GPU and 32 vCPU. On a GPU instance ECS gives the container its GPU and the
# NVIDIA runtime puts nvidia-smi in it; anywhere else (local mode) it says there is none.
task crunch {
  input {
    File numbers
  }
  command <<<
    set -e
    { nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null || echo "no GPU here"; } | head -n 1 > gpu.txt
    awk '{ s += $1 } END { print s }' "~{numbers}" > total.txt
  >>>
  output {
    String gpu_report = read_string("gpu.txt")
    Int total = read_int("total.txt")
  }
  runtime {
    docker: "ubuntu:22.04"
    gpu: true
    cpu: 32
    memory: "8 GiB"
  }
}
