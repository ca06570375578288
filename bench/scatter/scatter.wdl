version 1.1

# The local-overhead benchmark's scatter (bench/local_overhead.py): n tiny tasks side by side.

workflow fan_out {
  input {
    Int n = 50
    String tag = ""  # each benchmark run its own: no call-cache hits
  }

  scatter (i in range(n)) {
    call echo { input: i = i, tag = tag }
  }

  output {
    Array[Int] values = echo.value
  }
}

task echo {
  input {
    Int i
    String tag
  }
  command <<<
    echo ~{i}
  >>>
  output {
    Int value = read_int(stdout())
  }
  runtime {
    docker: "ubuntu:22.04"
    cpu: 1
    memory: "512 MiB"
  }
}
