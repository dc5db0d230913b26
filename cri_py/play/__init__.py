"""`cri-py play`: run Kubernetes Pod manifests through a CRI endpoint, translated as kubelet does.

kubelet is not available on these machines, so play is the kubelet for static pods: it loads
manifests with the official `kubernetes` models, applies the API server's defaults, turns the
pod into the CRI messages kubelet would send, and drives any CRI v1 endpoint with them.
"""


def play_main(argv: list[str]) -> int:
    """Entry point of `cri-py play`; imported lazily so `cri-py serve` never loads `kubernetes`,
    which only the `play` extra installs."""
    import sys

    try:
        from cri_py.play.cli import main
    except ModuleNotFoundError as exc:
        if exc.name != "kubernetes":
            raise
        print(
            "cri-py play needs the play extra: pip install 'cri-py[play]' (make install does)",
            file=sys.stderr,
        )
        return 2
    return main(argv)


__all__ = ["play_main"]
