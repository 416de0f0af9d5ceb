import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { documentedVariables, renderConfigDocs } from '../../scripts/config-docs.js';
import { envDocs } from '../../src/platform/config-fields.js';
import { envFields } from '../../src/config.js';

/** The value a variable's schema falls back to when unset, if it has one. */
function zodDefault(schema: z.ZodType): unknown {
  const def = schema._zod.def as { type: string; defaultValue?: unknown; in?: z.ZodType; out?: z.ZodType };
  if (def.type === 'default') return def.defaultValue;
  if (def.type === 'pipe') return zodDefault(def.in as z.ZodType) ?? zodDefault(def.out as z.ZodType);
  return undefined;
}

describe('configuration documentation', () => {
  const variables = documentedVariables(envFields);

  it('describes every variable the schema reads, in a section', () => {
    expect(variables.map(([name]) => name)).toEqual(Object.keys(envFields));
    expect(variables.length).toBeGreaterThan(90);
    for (const [name, doc] of variables) {
      expect(doc.description.length, name).toBeGreaterThan(10);
      expect(doc.group, name).not.toBe('');
    }
  });

  it('refuses a variable without a description, naming it', () => {
    const documented = envFields.PORT as z.ZodType;
    expect(() => documentedVariables({ PORT: documented, SHINY_NEW_SETTING: z.string() })).toThrow(
      'undocumented configuration variables: SHINY_NEW_SETTING',
    );
    expect(envDocs.get(z.string())).toBeUndefined();
  });

  it('documents the default each schema falls back to', () => {
    const withDefaults = variables.filter(([name]) => zodDefault(envFields[name] as z.ZodType) !== undefined);
    expect(withDefaults.map(([name]) => name)).toEqual(
      expect.arrayContaining(['PORT', 'ABANDON_AFTER', 'ALIPAY_FLOW']),
    );
    for (const [name, doc] of withDefaults) {
      expect(doc.default, name).toContain(String(zodDefault(envFields[name] as z.ZodType)));
    }
  });

  it('lists every variable on the page, and never an example of a secret', () => {
    const page = renderConfigDocs(envFields);
    for (const [name] of variables) expect(page).toMatch(new RegExp(`^- \`${name}\``, 'm'));
    const secrets = variables.filter(([, doc]) => doc.secret).map(([name]) => name);
    expect(secrets).toEqual(
      expect.arrayContaining(['TWILIO_AUTH_TOKEN', 'SMTP_URL', 'STRIPE_SECRET_KEY', 'DATABASE_URL', 'RECOUP_SECRET']),
    );
    for (const name of secrets) {
      const line = page.split('\n').find((l) => l.startsWith(`- \`${name}\``));
      expect(line, name).toContain('(_secret_)');
      expect(line, name).not.toContain('Example:');
    }
    expect(page).toMatch(/^- `SMS_COST_PER_SEGMENT`: .* Example: `0\.0079 USD`\.$/m);
  });
});
