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
# deleted or untracked file that .gitignore does not cover): CI tests what was committed, nothing else.
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
