"""The call cache, durable in S3: what a call's key covers (``keys``), the miniwdl cache backend
keeping entries and their files in S3 (``s3cache``), and why a call ran again (``explain``)."""
