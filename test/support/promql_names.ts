// The series names a PromQL expression reads, found without a PromQL parser
// (none is maintained on npm for Prometheus 2.x): strings, label matchers,
// ranges, grouping clauses and Grafana variables are removed first, and an
// identifier followed by "(" is a function or an aggregation. Enough for the
// expressions of deploy/: promtool checks their syntax separately.

const KEYWORDS = new Set(["and", "or", "unless", "bool", "offset", "group_left", "group_right", "inf", "nan"]);

export function seriesNames(expr: string): string[] {
  const stripped = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\{[^}]*\}/g, " ")
    .replace(/\[[^\]]*\]/g, " ")
    .replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, " ")
    .replace(/\$\{?\w+\}?/g, " ");
  const names: string[] = [];
  for (const match of stripped.matchAll(/[A-Za-z_:][A-Za-z0-9_:]*/g)) {
    const word = match[0];
    const start = match.index;
    if (start > 0 && /[0-9.]/.test(stripped[start - 1] ?? "")) continue;
    if (stripped.slice(start + word.length).trimStart().startsWith("(")) continue;
    if (KEYWORDS.has(word.toLowerCase())) continue;
    names.push(word);
  }
  return names;
}

/** Each selector of a raw series (not a recorded one) with its label matchers, `{}` when it has none. */
export function rawSelectors(expr: string): { name: string; matchers: string }[] {
  const selectors: { name: string; matchers: string }[] = [];
  for (const match of expr.matchAll(/(?<![\w:])(qm_[a-z0-9_]+|up|ALERTS)(?![\w:])(\{[^}]*\})?/g)) {
    selectors.push({ name: match[1] ?? "", matchers: match[2] ?? "{}" });
  }
  return selectors;
}
