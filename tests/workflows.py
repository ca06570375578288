"""WDL documents that tests in several files run, each written once."""

#: one task echoing its input: workflow ``hello``, input ``hello.who``, output ``hello.out``
HELLO = """version 1.1
workflow hello {
  input { String who }
  call greet { input: who = who }
  output { String out = greet.out }
}
task greet {
  input { String who }
  command <<< echo "~{who}" >>>
  output { String out = read_string(stdout()) }
  runtime { docker: "ubuntu:22.04" cpu: 0.25 memory: "512 MiB" }
}
"""

#: workflow ``greet``: "Hello, <who>!" (input ``greet.who``, output ``greet.greeting``)
GREET = """version 1.1
workflow greet {
  input { String who }
  call hi { input: who = who }
  output { String greeting = hi.out }
}
task hi {
  input { String who }
  command <<< echo "Hello, ~{who}!" >>>
  output { String out = read_string(stdout()) }
  runtime { docker: "ubuntu:22.04" cpu: 0.25 memory: "512 MiB" }
}
"""


def sleepy(seconds: int) -> str:
    """Workflow ``sleepy``: a scatter of ``sleepy.n`` (default 2) tasks sleeping ``sleepy.seconds``
    (default ``seconds``) each."""
    return f"""version 1.1
workflow sleepy {{
  input {{ Int n = 2  Int seconds = {seconds} }}
  scatter (i in range(n)) {{ call nap {{ input: seconds = seconds }} }}
}}
task nap {{
  input {{ Int seconds }}
  command <<< sleep ~{{seconds}} >>>
  runtime {{ docker: "ubuntu:22.04" cpu: 0.25 memory: "512 MiB" }}
}}
"""
