// "Did you mean": the known names closest to a mistyped one.

/** Candidates compared at most; the command and flag tables are far smaller, this only bounds the work. */
const SUGGEST_CANDIDATES_MAX = 1000;
/** Names offered at most when several are equally close. */
const SUGGESTIONS_MAX = 3;

/**
 * Optimal string alignment distance: insertions, deletions, substitutions and
 * swaps of two neighbours each cost 1, so `--jsno` is one step from `--json`.
 */
export function editDistance(a: string, b: string): number {
  let prev2: number[] = [];
  let prev: number[] = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row: number[] = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let d = Math.min((prev[j] ?? 0) + 1, (row[j - 1] ?? 0) + 1, (prev[j - 1] ?? 0) + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d = Math.min(d, (prev2[j - 2] ?? 0) + 1);
      row.push(d);
    }
    prev2 = prev;
    prev = row;
  }
  return prev[b.length] ?? 0;
}

/**
 * The candidates nearest to `input` (case ignored), if any is near enough to
 * be a typo: at most 2 edits, and fewer than half the longer name, so that
 * `--id` is not offered for `--x`.
 */
export function closest(input: string, candidates: readonly string[]): string[] {
  const typed = input.toLowerCase();
  let best = Number.POSITIVE_INFINITY;
  let found: string[] = [];
  for (const candidate of candidates.slice(0, SUGGEST_CANDIDATES_MAX)) {
    const d = editDistance(typed, candidate.toLowerCase());
    const limit = Math.min(2, Math.floor(Math.max(typed.length, candidate.length) / 2));
    if (d > limit || d > best) continue;
    if (d < best) {
      best = d;
      found = [];
    }
    if (!found.includes(candidate)) found.push(candidate);
  }
  return found.slice(0, SUGGESTIONS_MAX);
}

/** `; did you mean --json?` or `; did you mean --page-size or --page-token?`, or "" when nothing is close. */
export function didYouMean(input: string, candidates: readonly string[], show: (name: string) => string): string {
  const names = closest(input, candidates).map(show);
  if (names.length === 0) return "";
  const last = names.pop() ?? "";
  return `; did you mean ${names.length === 0 ? last : `${names.join(", ")} or ${last}`}?`;
}
