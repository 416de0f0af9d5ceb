DROP INDEX "messages_sending_idx";--> statement-breakpoint
ALTER TABLE "messages" ADD COLUMN "lease_started_at" timestamp with time zone;--> statement-breakpoint
CREATE INDEX "messages_sending_idx" ON "messages" USING btree ("lease_started_at") WHERE "messages"."status" in ('sending', 'unknown');--> statement-breakpoint
-- Messages in flight while this runs keep their lease, counted from their claim.
UPDATE "messages" SET "lease_started_at" = "claimed_at" WHERE "status" = 'sending';--> statement-breakpoint
-- The send lease is measured on one clock, Postgres's: a claim records the database's time in
-- lease_started_at, and whatever waits for in-flight messages compares it with the database's time
-- too (src/recoveries/send-lease.ts).
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
		-- The same per-customer lock as the locked path: count-then-claim is serialised per customer.
		PERFORM pg_advisory_xact_lock(hashtext('recoup:customer:' || v_customer_id));
		IF (
			SELECT coalesce(array_agg(t.at ORDER BY t.at), '{}')
			FROM (
				SELECT round(extract(epoch FROM coalesce(m.sent_at, m.claimed_at)) * 1000)::bigint AS at FROM messages m
				WHERE m.customer_id = v_customer_id AND m.status IN ('sending', 'sent', 'delivered', 'unknown')
					AND coalesce(m.sent_at, m.claimed_at) > p_cap_since
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
-- Sends no longer hold locks across provider calls (src/recoveries/guarded-send.ts): the lock and
-- record functions of the old send transaction go.
DROP FUNCTION "recoup_lock_for_send"(text, text, text);--> statement-breakpoint
DROP FUNCTION "recoup_record_sent"(text, text, timestamptz, timestamptz, integer, bigint, text, text, text, integer, timestamptz);
