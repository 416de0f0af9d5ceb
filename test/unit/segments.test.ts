import { describe, expect, it } from 'vitest';
import { countSegments } from '../../src/messages/segments.js';

// GSM 03.38 default alphabet as printable characters (0x1B, the escape, has none).
const gsmBasic =
  '@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !"#¤%&\'()*+,-./0123456789:;<=>?' +
  '¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà';
const gsmExtension = '\f^{}\\[~]|€';

describe('countSegments', () => {
  it('counts an empty body as one GSM-7 segment of 0 units', () => {
    expect(countSegments('')).toEqual({ encoding: 'GSM-7', units: 0, segments: 1 });
  });

  it('fits 160 GSM-7 characters in one segment and splits at 161', () => {
    expect(countSegments('a'.repeat(160))).toEqual({ encoding: 'GSM-7', units: 160, segments: 1 });
    expect(countSegments('a'.repeat(161))).toEqual({ encoding: 'GSM-7', units: 161, segments: 2 });
  });

  it('packs 153 GSM-7 units per concatenated segment', () => {
    expect(countSegments('a'.repeat(153 * 2))).toEqual({ encoding: 'GSM-7', units: 306, segments: 2 });
    expect(countSegments('a'.repeat(307))).toEqual({ encoding: 'GSM-7', units: 307, segments: 3 });
    expect(countSegments('a'.repeat(153 * 3))).toMatchObject({ segments: 3 });
    expect(countSegments('a'.repeat(153 * 3 + 1))).toMatchObject({ segments: 4 });
  });

  it('counts every basic-set character as one unit', () => {
    expect(gsmBasic).toHaveLength(127);
    expect(countSegments(gsmBasic)).toEqual({ encoding: 'GSM-7', units: 127, segments: 1 });
  });

  it('counts every extension-table character as two units', () => {
    for (const char of gsmExtension) {
      expect(countSegments(char), JSON.stringify(char)).toEqual({ encoding: 'GSM-7', units: 2, segments: 1 });
    }
    expect(countSegments('€'.repeat(80))).toEqual({ encoding: 'GSM-7', units: 160, segments: 1 });
    expect(countSegments(`${'a'.repeat(159)}€`)).toEqual({ encoding: 'GSM-7', units: 161, segments: 2 });
  });

  it('never splits an extension character across segments', () => {
    // 152 + 2 + 152 = 306 units, which would be 2 segments if the € could straddle the boundary;
    // it moves whole to segment 2 (2 + 151), leaving one 'a' for segment 3.
    expect(countSegments(`${'a'.repeat(152)}€${'a'.repeat(152)}`)).toEqual({
      encoding: 'GSM-7',
      units: 306,
      segments: 3,
    });
    // Fits exactly when it does not straddle: 151 + 2 = 153, then 153.
    expect(countSegments(`${'a'.repeat(151)}€${'a'.repeat(153)}`)).toEqual({
      encoding: 'GSM-7',
      units: 306,
      segments: 2,
    });
  });

  it('switches the whole body to UCS-2 for one character outside GSM-7', () => {
    expect(countSegments(`${'a'.repeat(69)}á`)).toEqual({ encoding: 'UCS-2', units: 70, segments: 1 });
    expect(countSegments('ç')).toMatchObject({ encoding: 'UCS-2' }); // only capital Ç is in GSM-7
    expect(countSegments('`')).toMatchObject({ encoding: 'UCS-2' });
    expect(countSegments('curly ’ quote')).toMatchObject({ encoding: 'UCS-2' });
    expect(countSegments('no\u00a0break')).toMatchObject({ encoding: 'UCS-2' });
  });

  it('fits 70 UCS-2 units in one segment and 67 per concatenated segment', () => {
    expect(countSegments('中'.repeat(70))).toEqual({ encoding: 'UCS-2', units: 70, segments: 1 });
    expect(countSegments('中'.repeat(71))).toEqual({ encoding: 'UCS-2', units: 71, segments: 2 });
    expect(countSegments('中'.repeat(134))).toEqual({ encoding: 'UCS-2', units: 134, segments: 2 });
    expect(countSegments('中'.repeat(135))).toEqual({ encoding: 'UCS-2', units: 135, segments: 3 });
  });

  it('counts Chinese mixed with ASCII one unit per character', () => {
    expect(countSegments('您好 hello，世界')).toEqual({ encoding: 'UCS-2', units: 11, segments: 1 });
  });

  it('counts an emoji as two UTF-16 units and never splits it', () => {
    expect(countSegments('😀')).toEqual({ encoding: 'UCS-2', units: 2, segments: 1 });
    expect(countSegments(`${'a'.repeat(68)}😀`)).toEqual({ encoding: 'UCS-2', units: 70, segments: 1 });
    expect(countSegments(`${'a'.repeat(69)}😀`)).toEqual({ encoding: 'UCS-2', units: 71, segments: 2 });
    // 66 + 2 + 66 = 134 units: the pair moves whole to segment 2, pushing one 'a' into segment 3.
    expect(countSegments(`${'a'.repeat(66)}😀${'a'.repeat(66)}`)).toEqual({
      encoding: 'UCS-2',
      units: 134,
      segments: 3,
    });
  });
});
