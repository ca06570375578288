version 1.1

# The example workflow of the README: greet each name (scatter), count the words of a reference
# text read from S3, and gather the greetings into one file.

workflow hello {
  input {
    Array[String] names
    File reference  # an s3:// URI in inputs.json
  }

  scatter (name in names) {
    call greet { input: name = name }
  }

  call gather { input: greetings = greet.greeting, reference = reference }

  output {
    Array[File] greetings = greet.greeting
    File summary = gather.summary
    Int reference_words = gather.reference_words
  }
}

task greet {
  input {
    String name
  }
  command <<<
    set -euo pipefail
    echo "Hello, ~{name}!" > greeting.txt
    echo "greeted ~{name}" >&2
  >>>
  output {
    File greeting = "greeting.txt"
  }
  runtime {
    docker: "ubuntu:22.04"
    cpu: 1
    memory: "1 GiB"
  }
}

task gather {
  input {
    Array[File] greetings
    File reference
  }
  command <<<
    set -euo pipefail
    cat ~{sep(" ", greetings)} > summary.txt
    wc -w < "~{reference}" | tr -d ' ' > reference_words.txt
  >>>
  output {
    File summary = "summary.txt"
    Int reference_words = read_int("reference_words.txt")
  }
  runtime {
    docker: "ubuntu:22.04"
    cpu: 2
    memory: "3 GiB"
  }
}
