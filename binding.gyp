{
  "targets": [
    {
      "target_name": "sdserve",
      "sources": ["native/socket.c", "native/binding.c"],
      "cflags": ["-std=gnu11", "-Wall", "-Wextra", "-Werror", "-O2", "-fvisibility=hidden"],
      "defines": ["NAPI_VERSION=8", "_GNU_SOURCE"]
    }
  ]
}
