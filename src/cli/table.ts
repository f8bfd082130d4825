// Aligned plain-text output. Columns are padded with spaces, never tabs, so
// that the output lines up in any terminal and survives `grep` and `awk`.

export interface Column {
  readonly header: string;
  /** Numbers read best right-aligned, so that their digits line up. */
  readonly align?: "left" | "right";
}

const COLUMN_GAP = "  ";

export function renderTable(columns: readonly Column[], rows: readonly (readonly string[])[]): string {
  const widths = columns.map((column, i) => {
    let width = column.header.length;
    for (const row of rows) width = Math.max(width, (row[i] ?? "").length);
    return width;
  });
  const line = (cells: readonly string[]): string =>
    columns
      .map((column, i) => {
        const cell = cells[i] ?? "";
        const width = widths[i] ?? 0;
        return column.align === "right" ? cell.padStart(width) : cell.padEnd(width);
      })
      .join(COLUMN_GAP)
      .trimEnd();
  return [line(columns.map((c) => c.header)), ...rows.map(line)].join("\n");
}

/** `label  value` pairs with the values aligned; pairs whose value is undefined are left out. */
export function renderFields(fields: readonly (readonly [string, string | undefined])[]): string {
  const shown = fields.filter((f): f is readonly [string, string] => f[1] !== undefined);
  const width = Math.max(0, ...shown.map(([label]) => label.length));
  return shown.map(([label, value]) => `${label.padEnd(width)}${COLUMN_GAP}${value}`.trimEnd()).join("\n");
}
