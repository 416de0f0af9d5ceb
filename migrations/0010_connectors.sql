ALTER TABLE "orders" ADD COLUMN "platform" text;--> statement-breakpoint
ALTER TABLE "orders" ADD COLUMN "payment_url" text;--> statement-breakpoint
ALTER TABLE "orders" ADD COLUMN "items" jsonb;--> statement-breakpoint
ALTER TABLE "webhook_endpoints" ADD COLUMN "platform" text;--> statement-breakpoint
CREATE INDEX "events_rejected_idx" ON "events" USING btree ("received_at") WHERE "events"."outcome" = 'rejected';--> statement-breakpoint
CREATE UNIQUE INDEX "webhook_endpoints_platform_idx" ON "webhook_endpoints" USING btree ("platform") WHERE "webhook_endpoints"."platform" is not null;
--> statement-breakpoint
-- recoup_apply_order_event (0004) also keeps the order's cart lines, its page on the shop and the
-- platform whose connector brought it in (src/orders/apply-event.ts).
DROP FUNCTION "recoup_apply_order_event"(text, text, timestamptz, timestamptz, jsonb, text, text, text, text, text, text, text, bigint, text, text, text, bigint, timestamptz, text, text, text, text, text, text, text, bigint, timestamptz, text, text, integer, boolean, integer, timestamptz, timestamptz);
--> statement-breakpoint
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
	p_items jsonb,
	p_payment_url text,
	p_platform text,
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
			coupon_expires_at, requested_cadence, status, state_at, items, payment_url, platform)
		VALUES (p_order_id, p_customer_id, p_amount, p_currency, p_description, p_coupon_code, p_coupon_discount_amount,
			p_coupon_expires_at, p_requested_cadence, 'pending', p_occurred_at, p_items, p_payment_url, p_platform)
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
				items = coalesce(p_items, items), payment_url = coalesce(p_payment_url, payment_url),
				platform = coalesce(platform, p_platform),
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
