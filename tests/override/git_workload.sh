#!/bin/sh
# tests/override/git_workload.sh - a git workload under the preload: git and
# the processes it starts (pack-objects' threads, gc, diff): a repository
# of generated files, two commits, a gc, a log, a diff. Fixed dates and
# names, so that the object ids and the output are the same every run.
set -eu
d=$(mktemp -d "${TMPDIR:-/tmp}/pm_git.XXXXXX")
trap 'rm -rf "$d"' EXIT
cd "$d"
export GIT_AUTHOR_NAME=pm GIT_AUTHOR_EMAIL=pm@example.org
export GIT_COMMITTER_NAME=pm GIT_COMMITTER_EMAIL=pm@example.org
export GIT_AUTHOR_DATE="2020-01-01T00:00:00Z" GIT_COMMITTER_DATE="2020-01-01T00:00:00Z"
export GIT_CONFIG_NOSYSTEM=1 HOME="$d"
git init -q -b main .
i=1
while [ $i -le 40 ]; do
    seq $i 2500 >f$i
    i=$((i + 1))
done
git add .
git commit -qm one
sed -i 's/1/x/' f*
git commit -qam two
git -c pack.threads=2 gc -q
git log --format='%H %s'
git diff --stat HEAD~1 | tail -n 1
git count-objects -v | grep -v size
git fsck --no-progress && echo "fsck: ok"
