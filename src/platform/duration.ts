const unitMs = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
const durationPattern = /^(?:\d+(?:ms|s|m|h|d))+$/;
const partPattern = /(\d+)(ms|s|m|h|d)/g;

/**
 * Parses a duration such as `15m`, `2h`, `72h`, `1h30m` or `10s` into milliseconds.
 * Returns undefined for anything else, so callers can report the path of the bad value.
 */
export function parseDuration(text: string): number | undefined {
  const trimmed = text.trim();
  if (!durationPattern.test(trimmed)) return undefined;
  let total = 0;
  for (const match of trimmed.matchAll(partPattern)) {
    total += Number(match[1]) * unitMs[match[2] as keyof typeof unitMs];
  }
  return total;
}

/** Renders milliseconds back as the shortest exact duration string (`90m` → `1h30m`). */
export function formatDuration(ms: number): string {
  if (ms === 0) return '0s';
  const parts: string[] = [];
  let rest = ms;
  for (const unit of ['d', 'h', 'm', 's', 'ms'] as const) {
    const size = unitMs[unit];
    if (rest >= size) {
      parts.push(`${Math.floor(rest / size)}${unit}`);
      rest %= size;
    }
  }
  return parts.join('');
}
