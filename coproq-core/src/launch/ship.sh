# coproq's bootstrap on the far side of `Builder::via`: run as `sh -c` by the command
# prefix, with the link on stdin and stdout. `@NAME@` places are filled in by ship.rs.
#
# It checks the platform, then says on stdout whether it has this executable cached (C)
# or needs it sent (S), writes what it is sent to a new private file, checks it, and
# starts it in fork mode. A cached copy runs only if it is the user's own regular file
# in a directory chain that nobody else can write, and its SHA-256 is the one expected.
# Without `sha256sum` or `shasum`, nothing is cached: the executable is sent every time
# and runs from a private temporary file, removed when it exits.

set -f
s=$(uname -s); m=$(uname -m); bad=
[ "$s" = "@OS@" ] || bad=1
@ARCH_CHECK@
if [ -n "$bad" ]; then echo "coproq: the far side runs $s $m" >&2; exit @OTHER_PLATFORM@; fi

# Files made here are the user's alone; the worker gets the user's own umask back.
o=$(umask); umask 077
u=$(id -u)
t=
trap 'rm -f "$t"' EXIT
trap 'exit 1' HUP INT TERM

if command -v sha256sum >/dev/null 2>&1; then h=sha256sum
elif command -v shasum >/dev/null 2>&1; then h='shasum -a 256'
else h=; fi
digest() { $h < "$1" | cut -d ' ' -f 1; }

# Whether directory $1 and every directory above it are the user's (or root's) and not
# writable by anyone else (a sticky directory of root's, such as /tmp, may be); $2 set:
# $1 itself must be the user's own.
private() {
    p=$(cd -P -- "$1" 2>/dev/null && pwd -P) || return 1
    own=$2
    while :; do
        set -- $(ls -ldn -- "$p" 2>/dev/null)
        case "$1" in d*) ;; *) return 1 ;; esac
        if [ -n "$own" ]; then [ "$3" = "$u" ] || return 1
        else [ "$3" = "$u" ] || [ "$3" = 0 ] || return 1; fi
        case "$1" in
        ?????w* | ????????w*)
            case "$1" in ?????????[tT]*) [ "$3" = 0 ] || return 1 ;; *) return 1 ;; esac ;;
        esac
        [ "$p" = / ] && return 0
        p=$(dirname -- "$p"); own=
    done
}

# Whether $1 is the user's own regular file (not a link), writable by no one else.
ours() {
    [ -f "$1" ] && [ ! -L "$1" ] || return 1
    set -- $(ls -ln -- "$1" 2>/dev/null)
    [ "$3" = "$u" ] || return 1
    case "$1" in -????????? | -?????????[.+@]) ;; *) return 1 ;; esac
    case "$1" in ?????w* | ????????w*) return 1 ;; esac
}

# A new file in directory $1, made exclusively (never through a planted name or link).
fresh() {
    if command -v mktemp >/dev/null 2>&1; then mktemp "$1/.coproq.XXXXXXXXXX"
    else
        n="$1/.coproq.$$.$(od -An -N8 -tu8 /dev/urandom | tr -d ' ')"
        (set -C; : > "$n") && printf '%s\n' "$n"
    fi
}

d="${XDG_CACHE_HOME:-$HOME/.cache}/coproq"
f="$d/@NAME@"
cache=
if [ -n "$h" ] && mkdir -p -- "$d" 2>/dev/null && private "$d" mine; then cache=1; fi

if [ -n "$cache" ] && ours "$f" && [ "$(digest "$f")" = "@DIGEST@" ]; then
    printf C
    run=$f
else
    printf S
    if [ -n "$cache" ]; then t=$(fresh "$d") || exit 1
    else t=$(fresh "${TMPDIR:-/tmp}") || exit 1; fi
    head -c @SIZE@ > "$t" || exit 1
    if [ "$(wc -c < "$t" | tr -d ' ')" != @SIZE@ ] || { [ -n "$h" ] && [ "$(digest "$t")" != "@DIGEST@" ]; }; then
        echo "coproq: the executable arrived damaged" >&2; exit 1
    fi
    chmod 700 "$t" || exit 1
    if [ -n "$cache" ]; then mv -f -- "$t" "$f" || exit 1; t=; run=$f; else run=$t; fi
fi

umask "$o"
if [ -n "$t" ]; then
    # Run from the temporary file, which goes when the worker exits.
    @MARKER@='@MARKER_VALUE@' "$run"
    exit $?
fi
@MARKER@='@MARKER_VALUE@' exec "$run"
