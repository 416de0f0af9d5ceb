// Every event with a customer asks (POST /v1/events), and building an Intl.DateTimeFormat costs
// about as much as the rest of the event's validation: each distinct name is checked once.
const timezoneValidity = new Map<string, boolean>();
const timezoneValidityLimit = 10_000;

/** Whether `zone` is an IANA timezone name this runtime knows. */
export function isValidTimezone(zone: string): boolean {
  const known = timezoneValidity.get(zone);
  if (known !== undefined) return known;
  let valid: boolean;
  try {
    new Intl.DateTimeFormat('en', { timeZone: zone });
    valid = true;
  } catch {
    valid = false;
  }
  // Bounded: garbage names in requests must not grow it without end.
  if (timezoneValidity.size < timezoneValidityLimit) timezoneValidity.set(zone, valid);
  return valid;
}
