"""Container runtimes behind one interface (`interface.ContainerRuntime`), and the OCI
runtime spec (config.json) generated from CRI requests.

- `interface`: what a runtime does; `registry`: handler name -> implementation.
- `runtime`: `OciRuntime`, a runc-compatible binary under conmon (`conmon`), with exec
  written once (`exec`) and conmon's attach socket (`attach`).
- `spec`, `security`, `users`, `cgroups`: the runtime spec and the host facts it needs.
- `exits`, `process`: waiting for processes, running short helper commands.
"""
