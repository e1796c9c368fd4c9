# Checks .ci/run makes before and during its test runs; sourced by it, and by test/unit/ci.test.ts, which
# runs each one against a fake node and a scratch git repository.

# require_node_major MAJOR: fails unless `node` on PATH is MAJOR.x (CI says which Node each run used: it
# must be the one it claims).
require_node_major() {
  local want=$1 have
  have=$(node -v 2>/dev/null) || {
    printf 'ci: node is missing: install Node %s\n' "$want" >&2
    return 1
  }
  if [[ $have != "v$want."* ]]; then
    printf 'ci: node on PATH is %s, expected v%s.x\n' "$have" "$want" >&2
    return 1
  fi
}

# require_committed_tree DIR: fails when DIR's work tree differs from its last commit (a modified, staged,
# deleted or untracked file that .gitignore does not cover), listing what differs.
require_committed_tree() {
  local dir=$1 changes
  changes=$(git -C "$dir" status --porcelain --untracked-files=all) || {
    printf 'ci: %s is not a git work tree\n' "$dir" >&2
    return 1
  }
  if [ -n "$changes" ]; then
    printf 'ci: the work tree differs from the last commit; commit or stash these first:\n%s\n' "$changes" >&2
    return 1
  fi
}

# committed_checkout SRC DEST: DEST becomes a fresh checkout of SRC's last commit (HEAD, detached), nothing
# else: no uncommitted change, no untracked or ignored file (node_modules included). Prints what SRC has that
# the checkout leaves out. CI runs there, so it tests what was committed, whatever else lies in SRC.
committed_checkout() {
  local src=$1 dest=$2 head
  head=$(git -C "$src" rev-parse HEAD) || return 1
  if ! require_committed_tree "$src" 2>/dev/null; then
    printf 'ci: testing commit %s; left out:\n%s\n' "${head:0:12}" "$(git -C "$src" status --porcelain --untracked-files=all)" >&2
  fi
  git clone --quiet --no-checkout "$src" "$dest" &&
    git -C "$dest" checkout --quiet --detach "$head" &&
    require_committed_tree "$dest"
}
