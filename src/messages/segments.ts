/**
 * SMS segment counting, so a template's cost is known before it is sent (SMS is billed per segment).
 *
 * A body is GSM-7 when every character is in the GSM 03.38 basic set (1 septet) or its extension
 * table (2 septets: escape + char); otherwise the whole body goes out as UCS-2, counted in UTF-16
 * code units (an emoji outside the BMP is a surrogate pair: 2 units).
 */
export interface SegmentInfo {
  encoding: 'GSM-7' | 'UCS-2';
  /** Septets (GSM-7) or UTF-16 code units (UCS-2) of the whole body, before segmentation. */
  units: number;
  /** Messages billed. An empty body still counts as 1: a provider bills an empty SMS as one message. */
  segments: number;
}

/** GSM 03.38 default alphabet (0x00–0x7F, minus 0x1B which is the escape to the extension table). */
const gsmBasic = new Set(
  '@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !"#¤%&\'()*+,-./0123456789:;<=>?' +
    '¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà',
);

/** GSM 03.38 extension table: each costs 2 septets (escape + char). */
const gsmExtension = new Set('\f^{}\\[~]|€');

/** Single-message capacity and per-segment capacity once a User Data Header (6 bytes) is needed. */
const limits = {
  'GSM-7': { single: 160, multi: 153 },
  'UCS-2': { single: 70, multi: 67 },
} as const;

export function countSegments(text: string): SegmentInfo {
  const gsm = gsmSizes(text);
  if (gsm) return pack('GSM-7', gsm);
  // Code points, so a surrogate pair is one 2-unit item and is never split across segments
  // (a split pair would render as two broken characters on most handsets).
  const ucs2: number[] = [];
  for (const char of text) ucs2.push(char.length);
  return pack('UCS-2', ucs2);
}

/** Septets per character, or undefined when some character is not in GSM-7. */
function gsmSizes(text: string): number[] | undefined {
  const sizes: number[] = [];
  for (const char of text) {
    if (gsmBasic.has(char)) sizes.push(1);
    else if (gsmExtension.has(char)) sizes.push(2);
    else return undefined;
  }
  return sizes;
}

function pack(encoding: SegmentInfo['encoding'], sizes: number[]): SegmentInfo {
  const { single, multi } = limits[encoding];
  const units = sizes.reduce((sum, size) => sum + size, 0);
  if (units <= single) return { encoding, units, segments: 1 };
  // Greedy fill: a 2-unit item (escape sequence or surrogate pair) that does not fit in the rest of
  // a segment moves whole to the next one, leaving a unit unused.
  let segments = 1;
  let used = 0;
  for (const size of sizes) {
    if (used + size > multi) {
      segments += 1;
      used = 0;
    }
    used += size;
  }
  return { encoding, units, segments };
}
