CREATE TABLE "webhook_attempts" (
	"delivery_id" text NOT NULL,
	"attempt" integer NOT NULL,
	"at" timestamp with time zone NOT NULL,
	"status" integer,
	"latency_ms" integer NOT NULL,
	"excerpt" text,
	"error" text,
	CONSTRAINT "webhook_attempts_delivery_id_attempt_pk" PRIMARY KEY("delivery_id","attempt")
);
--> statement-breakpoint
CREATE TABLE "webhook_deliveries" (
	"id" text PRIMARY KEY NOT NULL,
	"endpoint_id" text NOT NULL,
	"event_id" text NOT NULL,
	"status" text NOT NULL,
	"attempts" integer DEFAULT 0 NOT NULL,
	"next_attempt_at" timestamp with time zone,
	"wake_seq" integer DEFAULT 0 NOT NULL,
	"lease_until" timestamp with time zone,
	"last_status" integer,
	"last_error" text,
	"delivered_at" timestamp with time zone,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "webhook_endpoints" (
	"id" text PRIMARY KEY NOT NULL,
	"url" text NOT NULL,
	"description" text,
	"events" text[] NOT NULL,
	"secret" text NOT NULL,
	"previous_secret" text,
	"previous_secret_until" timestamp with time zone,
	"enabled" boolean DEFAULT true NOT NULL,
	"disabled_reason" text,
	"failing_since" timestamp with time zone,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
DROP INDEX "outbound_events_created_idx";--> statement-breakpoint
ALTER TABLE "outbound_events" ALTER COLUMN "order_id" DROP NOT NULL;--> statement-breakpoint
ALTER TABLE "outbound_events" ALTER COLUMN "sequence" DROP NOT NULL;--> statement-breakpoint
ALTER TABLE "outbound_events" ADD COLUMN "customer_id" text;--> statement-breakpoint
ALTER TABLE "outbound_events" ADD COLUMN "written" bigserial NOT NULL;--> statement-breakpoint
ALTER TABLE "outbound_events" ADD COLUMN "position" bigint;--> statement-breakpoint
CREATE UNIQUE INDEX "webhook_deliveries_endpoint_event_unique" ON "webhook_deliveries" USING btree ("endpoint_id","event_id");--> statement-breakpoint
CREATE INDEX "webhook_deliveries_due_idx" ON "webhook_deliveries" USING btree ("next_attempt_at") WHERE "webhook_deliveries"."status" = 'pending';--> statement-breakpoint
CREATE INDEX "webhook_deliveries_event_idx" ON "webhook_deliveries" USING btree ("event_id");--> statement-breakpoint
CREATE INDEX "webhook_deliveries_endpoint_created_idx" ON "webhook_deliveries" USING btree ("endpoint_id","created_at");--> statement-breakpoint
CREATE UNIQUE INDEX "outbound_events_position_unique" ON "outbound_events" USING btree ("position") WHERE "outbound_events"."position" is not null;--> statement-breakpoint
CREATE INDEX "outbound_events_customer_idx" ON "outbound_events" USING btree ("customer_id") WHERE "outbound_events"."order_id" is null;--> statement-breakpoint
CREATE INDEX "outbound_events_unnumbered_idx" ON "outbound_events" USING btree ("written") WHERE "outbound_events"."position" is null;
--> statement-breakpoint
-- An address as API answers show it: `+86*******0138`, `l***@example.com` (maskAddress in src/platform/logger.ts).
CREATE FUNCTION recoup_mask_address(p_address text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
	SELECT CASE
		WHEN p_address IS NULL OR p_address = '' THEN NULL
		WHEN strpos(p_address, '@') > 1 THEN left(p_address, 1) || '***' || substr(p_address, strpos(p_address, '@'))
		WHEN length(p_address) <= 6 THEN repeat('*', length(p_address))
		ELSE left(p_address, 3) || repeat('*', length(p_address) - 7) || right(p_address, 4)
	END
$$;
--> statement-breakpoint
-- Appends one event for the shop, with the order's amount and ids, in the caller's transaction.
CREATE FUNCTION recoup_outbound_event(p_type text, p_order_id text, p_customer_id text, p_data jsonb)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
	v_order jsonb := '{}'::jsonb;
BEGIN
	IF p_order_id IS NOT NULL THEN
		SELECT jsonb_build_object('order_id', o.id, 'customer_id', o.customer_id, 'amount', o.amount, 'currency', o.currency)
		INTO v_order FROM orders o WHERE o.id = p_order_id;
	END IF;
	INSERT INTO outbound_events (id, type, order_id, customer_id, data)
	VALUES ('evt_' || substr(replace(gen_random_uuid()::text, '-', ''), 1, 24), p_type, p_order_id,
		coalesce(p_customer_id, v_order->>'customer_id'), coalesce(v_order, '{}'::jsonb) || p_data);
END;
$$;
--> statement-breakpoint
CREATE FUNCTION recoup_recovery_started_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	PERFORM recoup_outbound_event('recovery.started', NEW.order_id, NEW.customer_id, jsonb_build_object(
		'recovery_id', NEW.id, 'cadence', NEW.cadence_name, 'cadence_version', NEW.cadence_version,
		'failure_category', NEW.failure_category, 'holdout', NEW.holdout, 'expires_at', NEW.expires_at));
	RETURN NULL;
END;
$$;
--> statement-breakpoint
CREATE TRIGGER "recoveries_started_events" AFTER INSERT ON "recoveries"
	FOR EACH ROW EXECUTE FUNCTION recoup_recovery_started_events();
--> statement-breakpoint
CREATE FUNCTION recoup_recovery_resumed_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	PERFORM recoup_outbound_event('recovery.resumed', NEW.order_id, NEW.customer_id, jsonb_build_object(
		'recovery_id', NEW.id, 'step', NEW.step_index, 'next_run_at', NEW.next_run_at, 'expires_at', NEW.expires_at));
	RETURN NULL;
END;
$$;
--> statement-breakpoint
CREATE TRIGGER "recoveries_resumed_events" AFTER UPDATE OF "state" ON "recoveries"
	FOR EACH ROW WHEN (OLD.state <> 'active' AND NEW.state = 'active')
	EXECUTE FUNCTION recoup_recovery_resumed_events();
--> statement-breakpoint
-- At commit, with the recovery as it then is: its end is the last event of the transaction that
-- ended it, after the payment or the cancellation that did.
CREATE FUNCTION recoup_recovery_ended_events() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
	r recoveries%ROWTYPE;
	told text;
BEGIN
	SELECT * INTO r FROM recoveries WHERE id = NEW.id;
	-- Once per recovery and transaction, however often it changed state in it: the recoveries told
	-- of so far are listed in a setting that ends with the transaction.
	told := coalesce(current_setting('recoup.recoveries_ended', true), '');
	IF r.state <> 'active' AND position(',' || r.id || ',' IN told) = 0 THEN
		PERFORM set_config('recoup.recoveries_ended', told || ',' || r.id || ',', true);
		PERFORM recoup_outbound_event('recovery.ended', r.order_id, r.customer_id, jsonb_build_object(
			'recovery_id', r.id, 'state', r.state, 'reason', r.ended_reason, 'ended_at', r.ended_at,
			'attribution', r.recovered_attribution, 'step', r.recovered_step, 'channel', r.recovered_channel));
	END IF;
	RETURN NULL;
END;
$$;
--> statement-breakpoint
CREATE CONSTRAINT TRIGGER "recoveries_ended_events" AFTER UPDATE OF "state" ON "recoveries"
	DEFERRABLE INITIALLY DEFERRED
	FOR EACH ROW WHEN (OLD.state = 'active' AND NEW.state <> 'active')
	EXECUTE FUNCTION recoup_recovery_ended_events();
--> statement-breakpoint
CREATE FUNCTION recoup_payment_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	PERFORM recoup_outbound_event('payment.succeeded', NEW.order_id, NULL, jsonb_build_object(
		'payment_id', NEW.id, 'gateway', NEW.gateway, 'gateway_payment_id', NEW.external_id, 'method', NEW.method,
		'amount', NEW.amount, 'currency', NEW.currency, 'incentive_amount', NEW.incentive_amount,
		'attempt', (SELECT a.attempt_number FROM payment_attempts a WHERE a.id = NEW.attempt_id),
		'attribution', NEW.attribution,
		'collected_by', CASE WHEN NEW.attempt_id IS NULL THEN 'shop' ELSE 'recoup' END,
		'duplicate', NEW.duplicate, 'recovery_id', NEW.recovery_id, 'paid_at', NEW.paid_at));
	RETURN NULL;
END;
$$;
--> statement-breakpoint
CREATE TRIGGER "payments_events" AFTER INSERT ON "payments"
	FOR EACH ROW EXECUTE FUNCTION recoup_payment_events();
--> statement-breakpoint
CREATE FUNCTION recoup_refund_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF NEW.status = 'succeeded' AND (TG_OP = 'INSERT' OR OLD.status IS DISTINCT FROM 'succeeded') THEN
		PERFORM recoup_outbound_event('refund.succeeded', NEW.order_id, NULL, jsonb_build_object(
			'refund_id', NEW.id, 'payment_id', NEW.payment_id, 'amount', NEW.amount, 'currency', NEW.currency,
			'reason', CASE WHEN NEW.reason = 'duplicate' THEN 'duplicate' ELSE 'ops' END,
			'note', CASE WHEN NEW.reason = 'duplicate' THEN NULL ELSE NEW.reason END,
			'succeeded_at', NEW.succeeded_at));
	END IF;
	RETURN NULL;
END;
$$;
--> statement-breakpoint
CREATE TRIGGER "refunds_events" AFTER INSERT OR UPDATE OF "status" ON "refunds"
	FOR EACH ROW EXECUTE FUNCTION recoup_refund_events();
--> statement-breakpoint
CREATE FUNCTION recoup_consent_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF NEW.customer_id IS NOT NULL THEN
		PERFORM recoup_outbound_event(
			CASE WHEN NEW.action = 'opt_out' THEN 'customer.opted_out' ELSE 'customer.opted_in' END,
			NULL, NEW.customer_id, jsonb_build_object(
				'customer_id', NEW.customer_id, 'channel', NEW.channel, 'address', recoup_mask_address(NEW.address),
				'how', NEW.source, 'keyword', NEW.keyword, 'at', NEW.at));
	END IF;
	RETURN NULL;
END;
$$;
--> statement-breakpoint
CREATE TRIGGER "consent_events_events" AFTER INSERT ON "consent_events"
	FOR EACH ROW EXECUTE FUNCTION recoup_consent_events();
--> statement-breakpoint
-- One per reminder: recorded only while an enabled endpoint asks for them. `sent` once a provider
-- accepted it (also when its first known state is `delivered`, an unknown outcome settled by a
-- callback), `failed` once refused for good.
CREATE FUNCTION recoup_message_events() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
	v_type text := CASE WHEN NEW.status = 'failed' THEN 'message.failed' ELSE 'message.sent' END;
BEGIN
	IF TG_OP = 'UPDATE' AND (OLD.status = NEW.status OR (OLD.status IN ('sent', 'delivered') AND v_type = 'message.sent')) THEN
		RETURN NULL;
	END IF;
	IF EXISTS (SELECT 1 FROM webhook_endpoints w WHERE w.enabled AND v_type = ANY (w.events)) THEN
		PERFORM recoup_outbound_event(v_type, NEW.order_id, NEW.customer_id, jsonb_build_object(
			'message_id', NEW.id, 'recovery_id', NEW.recovery_id, 'step', NEW.step, 'channel', NEW.channel,
			'template', NEW.template, 'to', recoup_mask_address(NEW.to_address), 'sent_at', NEW.sent_at,
			'reason', NEW.reason));
	END IF;
	RETURN NULL;
END;
$$;
--> statement-breakpoint
CREATE TRIGGER "messages_events" AFTER INSERT OR UPDATE OF "status" ON "messages"
	FOR EACH ROW WHEN (NEW.status IN ('sent', 'delivered', 'failed'))
	EXECUTE FUNCTION recoup_message_events();
