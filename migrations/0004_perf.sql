CREATE INDEX "messages_sending_idx" ON "messages" USING btree ("claimed_at") WHERE "messages"."status" = 'sending';--> statement-breakpoint
-- Dispatch's claim in one round trip (src/recoveries/dispatch-step.ts, fast path). The caller read the
-- recovery, its order, customer and message without locks and decided to send now; this takes the order's
-- row lock (the lock the payment path takes), checks that nothing it decided on has changed since, and
-- records the message as `sending`. NULL: something changed; the caller falls back to the locked path.
-- p_cap_since/p_cap_seen: the daily cap's window and the sends (epoch ms) the caller counted in it.
-- Each statement below reads the data committed when it starts (READ COMMITTED), so everything after
-- the lock sees what the payment path committed before it.
CREATE FUNCTION "recoup_claim_step"(
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
		to_address, link_token, link_expires_at, attempts, claim_id, planned_at, claimed_at, created_at, updated_at)
	VALUES (p_message_id, p_recovery_id, v_order_id, v_customer_id, p_step, p_channel, p_template, p_locale,
		'sending', p_to, p_link_token, p_link_expires_at, 1, p_claim_id, v_planned, p_now, p_now, p_now)
	ON CONFLICT (recovery_id, step) DO UPDATE SET
		channel = excluded.channel, template = excluded.template, locale = excluded.locale,
		status = 'sending', reason = NULL,
		to_address = excluded.to_address, link_token = excluded.link_token, link_expires_at = excluded.link_expires_at,
		attempts = messages.attempts + 1, claim_id = excluded.claim_id, claimed_at = excluded.claimed_at,
		updated_at = excluded.updated_at
	RETURNING attempts INTO v_attempts;
	RETURN v_attempts;
END;
$$;
--> statement-breakpoint
-- Intake of order.created, payment.failed and customer.updated in one round trip (src/orders/apply-event.ts,
-- which documents the rules): the idempotency record, the customer, the order under its row lock, the
-- shop's attempt, and the recovery the caller planned (start-recovery.ts planRecovery; p_cadence_name NULL:
-- no cadence matched).
-- o_outcome 'duplicate': the event id was seen before and nothing changed.
CREATE FUNCTION "recoup_apply_order_event"(
	p_event_id text,
	p_type text,
	p_occurred_at timestamptz,
	p_now timestamptz,
	p_payload jsonb,
	p_customer_id text,
	p_customer_name text,
	p_customer_email text,
	p_customer_phone text,
	p_customer_locale text,
	p_customer_timezone text,
	p_order_id text,
	p_amount bigint,
	p_currency text,
	p_description text,
	p_coupon_code text,
	p_coupon_discount_amount bigint,
	p_coupon_expires_at timestamptz,
	p_requested_cadence text,
	p_attempt_id text,
	p_gateway text,
	p_method text,
	p_failure_code text,
	p_failure_category text,
	p_failure_message text,
	p_payment_amount bigint,
	p_abandon_check_at timestamptz,
	p_recovery_id text,
	p_cadence_name text,
	p_cadence_version integer,
	p_holdout boolean,
	p_step_index integer,
	p_recovery_run_at timestamptz,
	p_recovery_expires_at timestamptz,
	OUT o_outcome text,
	OUT o_recovery_id text
) LANGUAGE plpgsql AS $$
DECLARE
	v_status text;
	v_state_at timestamptz;
BEGIN
	INSERT INTO events (id, type, order_id, customer_id, occurred_at, received_at, outcome, payload)
	VALUES (p_event_id, p_type, p_order_id, p_customer_id, p_occurred_at, p_now, 'pending', p_payload)
	ON CONFLICT (id) DO NOTHING;
	IF NOT FOUND THEN
		o_outcome := 'duplicate';
		RETURN;
	END IF;

	IF p_customer_id IS NOT NULL THEN
		INSERT INTO customers (id, name, email, phone, locale, timezone, updated_at)
		VALUES (p_customer_id, p_customer_name, p_customer_email, p_customer_phone, p_customer_locale,
			p_customer_timezone, p_occurred_at)
		ON CONFLICT (id) DO UPDATE SET
			name = coalesce(excluded.name, customers.name),
			email = coalesce(excluded.email, customers.email),
			phone = coalesce(excluded.phone, customers.phone),
			locale = coalesce(excluded.locale, customers.locale),
			timezone = coalesce(excluded.timezone, customers.timezone),
			email_bad_reason = CASE WHEN excluded.email IS DISTINCT FROM customers.email AND excluded.email IS NOT NULL
				THEN NULL ELSE customers.email_bad_reason END,
			phone_bad_reason = CASE WHEN excluded.phone IS DISTINCT FROM customers.phone AND excluded.phone IS NOT NULL
				THEN NULL ELSE customers.phone_bad_reason END,
			updated_at = excluded.updated_at
		WHERE customers.updated_at <= excluded.updated_at;
	END IF;

	IF p_type = 'customer.updated' OR p_order_id IS NULL THEN
		o_outcome := 'customer_updated';
	ELSE
		INSERT INTO orders (id, customer_id, amount, currency, description, coupon_code, coupon_discount_amount,
			coupon_expires_at, requested_cadence, status, state_at)
		VALUES (p_order_id, p_customer_id, p_amount, p_currency, p_description, p_coupon_code, p_coupon_discount_amount,
			p_coupon_expires_at, p_requested_cadence, 'pending', p_occurred_at)
		ON CONFLICT (id) DO NOTHING;
		SELECT o.status, o.state_at INTO v_status, v_state_at FROM orders o WHERE o.id = p_order_id FOR UPDATE;

		IF p_type = 'payment.failed' THEN
			INSERT INTO payment_attempts (id, order_id, event_id, gateway, method, status, amount, currency,
				failure_code, failure_category, failure_message, occurred_at)
			VALUES (p_attempt_id, p_order_id, p_event_id, p_gateway, p_method, 'failed', coalesce(p_payment_amount, p_amount),
				p_currency, p_failure_code, p_failure_category, p_failure_message, p_occurred_at);
		END IF;

		IF v_status <> 'pending' THEN
			o_outcome := 'order_already_final';
		ELSIF p_occurred_at < v_state_at THEN
			o_outcome := 'stale';
		ELSE
			UPDATE orders SET
				amount = p_amount, currency = p_currency, description = p_description,
				coupon_code = p_coupon_code, customer_id = p_customer_id,
				coupon_discount_amount = p_coupon_discount_amount, coupon_expires_at = p_coupon_expires_at,
				requested_cadence = coalesce(p_requested_cadence, requested_cadence),
				state_at = p_occurred_at, updated_at = p_now,
				last_failure_code = CASE WHEN p_type = 'payment.failed' THEN p_failure_code ELSE last_failure_code END,
				last_failure_category = coalesce(p_failure_category, last_failure_category),
				last_failure_message = CASE WHEN p_type = 'payment.failed' THEN p_failure_message ELSE last_failure_message END,
				last_gateway = coalesce(p_gateway, last_gateway),
				last_method = coalesce(p_method, last_method),
				abandon_check_at = CASE
					WHEN p_type = 'payment.failed' THEN NULL
					WHEN EXISTS (SELECT 1 FROM recoveries r WHERE r.order_id = p_order_id) THEN abandon_check_at
					ELSE p_abandon_check_at
				END
			WHERE id = p_order_id;

			IF p_type = 'order.created' THEN
				o_outcome := 'order_recorded';
			ELSIF EXISTS (SELECT 1 FROM recoveries r WHERE r.order_id = p_order_id) THEN
				o_outcome := 'recovery_already_exists';
			ELSIF p_cadence_name IS NULL THEN
				o_outcome := 'recovery_not_started';
			ELSE
				INSERT INTO recoveries (id, order_id, customer_id, cadence_name, cadence_version, failure_category,
					state, step_index, next_run_at, wake_seq, started_at, expires_at, holdout, currency, failed_method)
				VALUES (p_recovery_id, p_order_id, p_customer_id, p_cadence_name, p_cadence_version,
					coalesce(p_failure_category, 'unknown'), 'active', p_step_index, p_recovery_run_at, 0, p_now,
					p_recovery_expires_at, p_holdout, p_currency, p_method)
				ON CONFLICT (order_id) DO NOTHING
				RETURNING id INTO o_recovery_id;
				o_outcome := CASE WHEN o_recovery_id IS NULL THEN 'recovery_already_exists' ELSE 'recovery_started' END;
			END IF;
		END IF;
	END IF;

	UPDATE events SET outcome = o_outcome WHERE id = p_event_id;
END;
$$;
--> statement-breakpoint
-- The send transaction's first statement (dispatch-step.ts): the order's share lock first, as always, then
-- the message and the recovery, in one round trip. The caller holds them until the provider answered.
CREATE FUNCTION "recoup_lock_for_send"(p_order_id text, p_message_id text, p_recovery_id text)
RETURNS TABLE (
	o_order_status text,
	o_message_status text,
	o_claim_id text,
	o_recovery_state text,
	o_step_index integer,
	o_wake_seq integer,
	o_started_at timestamptz,
	o_expires_at timestamptz
) LANGUAGE plpgsql AS $$
BEGIN
	SELECT o.status INTO o_order_status FROM orders o WHERE o.id = p_order_id FOR SHARE;
	SELECT m.status, m.claim_id INTO o_message_status, o_claim_id FROM messages m WHERE m.id = p_message_id FOR UPDATE;
	SELECT r.state, r.step_index, r.wake_seq, r.started_at, r.expires_at
	INTO o_recovery_state, o_step_index, o_wake_seq, o_started_at, o_expires_at
	FROM recoveries r WHERE r.id = p_recovery_id FOR UPDATE;
	RETURN NEXT;
END;
$$;
--> statement-breakpoint
-- The unlocked read before recoup_claim_step (dispatch-step.ts): the recovery, its order, customer, step
-- message, the customer's suppressions (as stored, normalised or hashed, see compliance/suppressions.ts),
-- their sends since p_cap_since (epoch ms) and the open gateway circuits. A function so that its plan is
-- prepared once per connection.
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
		(SELECT array_agg(g.gateway) FROM gateway_circuits g WHERE g.state = 'open')
	FROM recoveries r
	JOIN orders o ON o.id = r.order_id
	LEFT JOIN customers c ON c.id = o.customer_id
	LEFT JOIN LATERAL (SELECT regexp_replace(btrim(c.phone), '[[:space:]().-]', '', 'g') AS sms_normalised,
		lower(btrim(c.email)) AS email_normalised) f ON true
	LEFT JOIN messages m ON m.recovery_id = r.id AND m.step = r.step_index
	WHERE r.id = p_recovery_id;
END;
$$;
--> statement-breakpoint
-- The send transaction's last statement (dispatch-step.ts): the message `sent` and the recovery moved to
-- its next step, prepared once per connection.
CREATE FUNCTION "recoup_record_sent"(
	p_message_id text,
	p_provider_id text,
	p_sent_at timestamptz,
	p_now timestamptz,
	p_segments integer,
	p_cost_micros bigint,
	p_cost_currency text,
	p_cost_source text,
	p_recovery_id text,
	p_next_step integer,
	p_next_run_at timestamptz,
	OUT o_planned_at timestamptz,
	OUT o_wake_seq integer
) LANGUAGE plpgsql AS $$
BEGIN
	UPDATE messages SET status = 'sent', provider_id = p_provider_id, sent_at = p_sent_at, reason = NULL,
		updated_at = p_now, segments = p_segments, cost_micros = p_cost_micros, cost_currency = p_cost_currency,
		cost_source = p_cost_source
	WHERE id = p_message_id
	RETURNING planned_at INTO o_planned_at;
	UPDATE recoveries SET step_index = p_next_step, next_run_at = p_next_run_at, wake_seq = wake_seq + 1
	WHERE id = p_recovery_id
	RETURNING wake_seq INTO o_wake_seq;
END;
$$;
