# Sourced by the benchmark scripts: wait_for IP:PORT waits (up to a minute) until something
# listens there.
wait_for() { # ip:port
    for _ in $(seq 600); do
        if (exec 3<>"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null; then return; fi
        sleep 0.1
    done
    echo "nothing listens on $1" >&2
    exit 1
}
