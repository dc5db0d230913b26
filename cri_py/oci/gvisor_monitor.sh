#!/bin/sh
# conmon's runtime for a container that joins a pod's gVisor sandbox (cri_py/oci/gvisor.py).
#
#   sh gvisor_monitor.sh RUNSC STATE_DIR RUNSC_GLOBAL_ARGS... SUBCOMMAND ARGS...
#
# conmon watches the process the runtime's `create` leaves in the pid file and records its
# exit. A container inside a gVisor sandbox has no host process: `runsc create` names the
# sandbox's pid, which is not conmon's child. So `create` here also starts a holder, a small
# child of ours standing in for the container on the host: it keeps conmon's stdio (runsc
# hands the stdio of `runsc start`, not of `create`, to a container joining a sandbox),
# waits for StartContainer (a line on STATE_DIR/start), runs `runsc start` with that stdio,
# then `runsc wait` and exits with the container's exit status, which conmon records.
# Anything else goes to runsc unchanged. RUNSC_GLOBAL_ARGS must not contain the word create.
#
# STATE_DIR/: start (FIFO, written by StartContainer), started (the start's exit status),
# start.log (runsc's error, JSON), holder (the holder's pid), runsc.pid (the sandbox's pid).

runsc=$1
state=$2
shift 2

# conmon calls its runtime only to create (a conmon of exec calls runsc itself)
case " $* " in *" create "*) ;; *) exec "$runsc" "$@" ;; esac

# create: the same arguments, but runsc writes the sandbox's pid to a file of ours and
# conmon's pid file gets the holder's; the id stays last
pid_file=""
cid=""
in_create=0
expect=""
for arg do
    shift
    if [ -n "$expect" ]; then
        if [ "$expect" = pid ]; then pid_file=$arg; else set -- "$@" "$arg"; fi
        expect=""
    elif [ $in_create = 0 ]; then
        set -- "$@" "$arg"
        [ "$arg" = create ] && in_create=1
    else
        case $arg in
            --pid-file) expect=pid ;;
            --pid-file=*) pid_file=${arg#--pid-file=} ;;
            --bundle|--console-socket) set -- "$@" "$arg"; expect=keep ;;
            -*) set -- "$@" "$arg" ;;
            *) cid=$arg ;;
        esac
    fi
done
[ -n "$pid_file" ] && [ -n "$cid" ] || { echo "gvisor_monitor: create needs --pid-file and an id" >&2; exit 2; }

mkdir -p "$state" || exit 1
rm -f "$state/start" "$state/started" "$state/started.tmp" "$state/start.log"
mkfifo -m 0600 "$state/start" || exit 1
# the container joins the sandbox named by its annotations; its stdio is not read here
"$runsc" "$@" --pid-file "$state/runsc.pid" "$cid" </dev/null || exit $?

# $@ is GLOBAL_ARGS... create CREATE_ARGS...; keep the global arguments
globals=$#
n=0
for arg do
    n=$((n + 1))
    [ "$arg" = create ] && globals=$((n - 1)) && break
done
n=0
for arg do
    shift
    n=$((n + 1))
    [ $n -le "$globals" ] && set -- "$@" "$arg"
done

# The holder needs conmon's stdin: it is the container's (`runsc start` hands it over), a pipe
# that stays open until the first attach closes it (stdin_once) or conmon exits. A background
# list of a non-interactive shell starts with /dev/null as its stdin (POSIX), and a `sh` in the
# container would read EOF from it at once and exit, so it comes through fd 9.
exec 9<&0
(
    exec <&9 9<&-
    # never started (stopped or removed while created): SIGKILL ends the wait, conmon records 137
    read -r _ < "$state/start" || exit 137
    "$runsc" "$@" --log="$state/start.log" --log-format=json start "$cid"
    code=$?
    echo $code > "$state/started.tmp" && mv "$state/started.tmp" "$state/started"
    [ $code = 0 ] || exit $code
    # the sandbox holds the container's stdio now; ours would keep conmon's pipes open
    exec </dev/null >/dev/null 2>&1
    while :; do
        # {"id":"...","exitStatus":N}
        out=$("$runsc" "$@" wait "$cid") && break
        # the wait failed: the container may still run (retry) or its sandbox is gone, with
        # every process in it killed
        status=$("$runsc" "$@" state "$cid") || exit 137
        case $status in *'"running"'*) sleep 1 ;; *) exit 137 ;; esac
    done
    code=${out##*\"exitStatus\":}
    code=${code%%[!0-9]*}
    exit $((${code:-255} & 255))
) &
exec 9<&-
echo $! > "$state/holder"
echo $! > "$pid_file"
