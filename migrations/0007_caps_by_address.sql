-- The daily cap counts messages by the address they went to as well as by customer: guest checkouts
-- give one person a new customer id per order, and their reminders must still count together.
-- The normalised form of an address (src/addresses.ts normaliseAddress): trimmed, emails lower-cased,
-- phone separators removed. Immutable, so that a stored column and an index can be built on it.
CREATE FUNCTION "recoup_normalise_address"(p_channel text, p_address text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
	SELECT CASE p_channel
		WHEN 'email' THEN lower(btrim(p_address))
		ELSE regexp_replace(btrim(p_address), '[[:space:]().-]', '', 'g')
	END
$$;
--> statement-breakpoint
-- Filled in for every message, old and new, whichever statement writes it.
ALTER TABLE "messages" ADD COLUMN "to_normalised" text GENERATED ALWAYS AS (recoup_normalise_address("channel", "to_address")) STORED;--> statement-breakpoint
-- "Messages to this address on this channel since T", as the cap counts them: one index range scan.
-- Partial on the address, not on the status: a statement that tests a message's status must not find
-- this index implied by it (a bitmap scan of all of it), and messages never claimed have no send time
-- to fall in the range anyway.
CREATE INDEX "messages_address_sent_idx" ON "messages" USING btree ("channel", "to_normalised", (coalesce("sent_at", "claimed_at"))) WHERE "messages"."to_normalised" is not null;--> statement-breakpoint
-- The daily cap's fence, as in 0006, counting by address too: the messages counted are the
-- customer's and those to the claimed address on its channel under any other customer id, and the
-- count-then-claim is serialised per customer and per address (in that order, as the locked path
-- takes them), so that two orders of two guest customers with one phone cannot both pass the cap.
CREATE OR REPLACE FUNCTION "recoup_claim_step"(
	p_recovery_id text,
	p_wake_seq integer,
	p_step integer,
	p_message_id text,
	p_seen_message_updated_at timestamptz,
	p_channel text,
	p_to text,
	p_template text,
	p_locale text,
	p_link_token text,
	p_link_expires_at timestamptz,
	p_claim_id text,
	p_now timestamptz,
	p_cap_since timestamptz,
	p_cap_seen bigint[]
) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
	v_order_id text;
	v_customer_id text;
	v_planned timestamptz;
	v_attempts integer;
	v_address text := recoup_normalise_address(p_channel, p_to);
BEGIN
	SELECT o.id, o.customer_id INTO v_order_id, v_customer_id
	FROM orders o
	WHERE o.id = (SELECT r.order_id FROM recoveries r WHERE r.id = p_recovery_id) AND o.status = 'pending'
	FOR UPDATE OF o;
	IF v_order_id IS NULL THEN
		RETURN NULL;
	END IF;

	SELECT coalesce(r.next_run_at, p_now) INTO v_planned
	FROM recoveries r
	WHERE r.id = p_recovery_id AND r.state = 'active' AND r.wake_seq = p_wake_seq AND r.step_index = p_step
		AND r.expires_at > p_now;
	IF NOT FOUND THEN
		RETURN NULL;
	END IF;

	IF p_seen_message_updated_at IS NULL THEN
		PERFORM 1 FROM messages m WHERE m.recovery_id = p_recovery_id AND m.step = p_step;
		IF FOUND THEN
			RETURN NULL;
		END IF;
	ELSE
		PERFORM 1 FROM messages m
		WHERE m.id = p_message_id AND m.status = 'scheduled'
			AND date_trunc('milliseconds', m.updated_at) = p_seen_message_updated_at
		FOR UPDATE;
		IF NOT FOUND THEN
			RETURN NULL;
		END IF;
	END IF;

	PERFORM 1 FROM customers c
	WHERE c.id = v_customer_id
		AND CASE p_channel
			WHEN 'sms' THEN c.phone = p_to AND c.phone_bad_reason IS NULL
			ELSE c.email = p_to AND c.email_bad_reason IS NULL
		END;
	IF NOT FOUND THEN
		RETURN NULL;
	END IF;

	IF p_cap_since IS NOT NULL THEN
		-- The same locks as the locked path: count-then-claim is serialised per customer and per address.
		PERFORM pg_advisory_xact_lock(hashtext('recoup:customer:' || v_customer_id));
		PERFORM pg_advisory_xact_lock(hashtext('recoup:address:' || p_channel || ':' || v_address));
		IF (
			SELECT coalesce(array_agg(t.at ORDER BY t.at), '{}')
			FROM (
				SELECT round(extract(epoch FROM coalesce(m.sent_at, m.claimed_at)) * 1000)::bigint AS at FROM messages m
				WHERE m.customer_id = v_customer_id AND m.status IN ('sending', 'sent', 'delivered', 'unknown')
					AND coalesce(m.sent_at, m.claimed_at) > p_cap_since
				UNION ALL
				SELECT round(extract(epoch FROM coalesce(m.sent_at, m.claimed_at)) * 1000)::bigint FROM messages m
				WHERE m.channel = p_channel AND m.to_normalised = v_address
					AND m.status IN ('sending', 'sent', 'delivered', 'unknown')
					AND coalesce(m.sent_at, m.claimed_at) > p_cap_since AND m.customer_id <> v_customer_id
			) t
		) IS DISTINCT FROM (SELECT coalesce(array_agg(s ORDER BY s), '{}') FROM unnest(p_cap_seen) s) THEN
			RETURN NULL;
		END IF;
	END IF;

	INSERT INTO messages (id, recovery_id, order_id, customer_id, step, channel, template, locale, status,
		to_address, link_token, link_expires_at, attempts, claim_id, planned_at, claimed_at, lease_started_at,
		created_at, updated_at)
	VALUES (p_message_id, p_recovery_id, v_order_id, v_customer_id, p_step, p_channel, p_template, p_locale,
		'sending', p_to, p_link_token, p_link_expires_at, 1, p_claim_id, v_planned, p_now, clock_timestamp(), p_now, p_now)
	ON CONFLICT (recovery_id, step) DO UPDATE SET
		channel = excluded.channel, template = excluded.template, locale = excluded.locale,
		status = 'sending', reason = NULL,
		to_address = excluded.to_address, link_token = excluded.link_token, link_expires_at = excluded.link_expires_at,
		attempts = messages.attempts + 1, claim_id = excluded.claim_id, claimed_at = excluded.claimed_at,
		lease_started_at = excluded.lease_started_at, updated_at = excluded.updated_at
	RETURNING attempts INTO v_attempts;
	RETURN v_attempts;
END;
$$;--> statement-breakpoint
-- The snapshot of 0004 gains, per channel, the sends to the customer's current address under other
-- customer ids (sms_address_sends, email_address_sends: epoch ms, ascending, comma-separated), and
-- normalises the addresses with recoup_normalise_address.
DROP FUNCTION "recoup_step_snapshot"(text, timestamptz);--> statement-breakpoint
CREATE FUNCTION "recoup_step_snapshot"(p_recovery_id text, p_cap_since timestamptz)
RETURNS TABLE (
	id text,
	order_id text,
	cadence_name text,
	cadence_version integer,
	failure_category text,
	state text,
	step_index integer,
	next_run_at timestamptz,
	wake_seq integer,
	started_at timestamptz,
	expires_at timestamptz,
	customer_id text,
	order_status text,
	amount text,
	currency text,
	description text,
	coupon_code text,
	customer_name text,
	email text,
	phone text,
	locale text,
	timezone text,
	email_bad_reason text,
	phone_bad_reason text,
	sms_normalised text,
	email_normalised text,
	suppressions json,
	message_id text,
	message_status text,
	message_template text,
	message_updated_at timestamptz,
	recent_sends text,
	sms_address_sends text,
	email_address_sends text,
	open_gateways text[]
) LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_column
BEGIN
	RETURN QUERY
	SELECT r.id, r.order_id, r.cadence_name, r.cadence_version, r.failure_category, r.state, r.step_index,
		r.next_run_at, r.wake_seq, r.started_at, r.expires_at,
		o.customer_id, o.status, o.amount::text, o.currency, o.description, o.coupon_code,
		c.name, c.email, c.phone, c.locale, c.timezone, c.email_bad_reason, c.phone_bad_reason,
		f.sms_normalised, f.email_normalised,
		(SELECT json_agg(json_build_object('channel', s.channel, 'reason', s.reason) ORDER BY s.created_at)
			FROM suppressions s
			WHERE (s.channel = 'sms' AND c.phone <> '' AND s.address IN
					(c.phone, f.sms_normalised, 'sha256:' || encode(sha256(convert_to(f.sms_normalised, 'UTF8')), 'hex')))
				OR (s.channel = 'email' AND c.email <> '' AND s.address IN
					(c.email, f.email_normalised, 'sha256:' || encode(sha256(convert_to(f.email_normalised, 'UTF8')), 'hex')))),
		m.id, m.status, m.template, m.updated_at,
		(SELECT string_agg(t.at::text, ',' ORDER BY t.at) FROM (
			SELECT round(extract(epoch FROM coalesce(sm.sent_at, sm.claimed_at)) * 1000)::bigint AS at FROM messages sm
			WHERE sm.customer_id = o.customer_id AND sm.status IN ('sending', 'sent', 'delivered', 'unknown')
				AND coalesce(sm.sent_at, sm.claimed_at) > p_cap_since) t),
		(SELECT string_agg(t.at::text, ',' ORDER BY t.at) FROM (
			SELECT round(extract(epoch FROM coalesce(am.sent_at, am.claimed_at)) * 1000)::bigint AS at FROM messages am
			WHERE am.channel = 'sms' AND am.to_normalised = f.sms_normalised
				AND am.status IN ('sending', 'sent', 'delivered', 'unknown')
				AND coalesce(am.sent_at, am.claimed_at) > p_cap_since AND am.customer_id <> o.customer_id) t),
		(SELECT string_agg(t.at::text, ',' ORDER BY t.at) FROM (
			SELECT round(extract(epoch FROM coalesce(am.sent_at, am.claimed_at)) * 1000)::bigint AS at FROM messages am
			WHERE am.channel = 'email' AND am.to_normalised = f.email_normalised
				AND am.status IN ('sending', 'sent', 'delivered', 'unknown')
				AND coalesce(am.sent_at, am.claimed_at) > p_cap_since AND am.customer_id <> o.customer_id) t),
		(SELECT array_agg(g.gateway) FROM gateway_circuits g WHERE g.state = 'open')
	FROM recoveries r
	JOIN orders o ON o.id = r.order_id
	LEFT JOIN customers c ON c.id = o.customer_id
	LEFT JOIN LATERAL (SELECT recoup_normalise_address('sms', c.phone) AS sms_normalised,
		recoup_normalise_address('email', c.email) AS email_normalised) f ON true
	LEFT JOIN messages m ON m.recovery_id = r.id AND m.step = r.step_index
	WHERE r.id = p_recovery_id;
END;
$$;
