CREATE TABLE "audit_log" (
	"id" text PRIMARY KEY NOT NULL,
	"at" timestamp with time zone NOT NULL,
	"actor" text NOT NULL,
	"action" text NOT NULL,
	"subject" text NOT NULL,
	"before" jsonb,
	"after" jsonb
);
--> statement-breakpoint
CREATE TABLE "clicks" (
	"id" text PRIMARY KEY NOT NULL,
	"message_id" text NOT NULL,
	"recovery_id" text NOT NULL,
	"order_id" text NOT NULL,
	"user_agent" text,
	"at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
CREATE TABLE "gateway_events" (
	"gateway" text NOT NULL,
	"event_id" text NOT NULL,
	"type" text NOT NULL,
	"gateway_payment_id" text,
	"outcome" text NOT NULL,
	"received_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "gateway_events_gateway_event_id_pk" PRIMARY KEY("gateway","event_id")
);
--> statement-breakpoint
CREATE TABLE "incentives" (
	"id" text PRIMARY KEY NOT NULL,
	"customer_id" text NOT NULL,
	"order_id" text NOT NULL,
	"recovery_id" text NOT NULL,
	"cadence_name" text NOT NULL,
	"step" integer NOT NULL,
	"amount" bigint NOT NULL,
	"currency" text NOT NULL,
	"status" text NOT NULL,
	"granted_at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
CREATE TABLE "payments" (
	"id" text PRIMARY KEY NOT NULL,
	"order_id" text NOT NULL,
	"attempt_id" text,
	"gateway" text,
	"external_id" text NOT NULL,
	"method" text,
	"amount" bigint NOT NULL,
	"currency" text NOT NULL,
	"incentive_amount" bigint DEFAULT 0 NOT NULL,
	"paid_at" timestamp with time zone NOT NULL,
	"duplicate" boolean DEFAULT false NOT NULL,
	"recovery_id" text,
	"cadence_name" text,
	"cadence_version" integer,
	"step" integer,
	"channel" text,
	"message_id" text,
	"click_id" text,
	"attribution" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "refunds" (
	"id" text PRIMARY KEY NOT NULL,
	"order_id" text NOT NULL,
	"payment_id" text NOT NULL,
	"amount" bigint NOT NULL,
	"currency" text NOT NULL,
	"reason" text NOT NULL,
	"status" text NOT NULL,
	"refund_key" text NOT NULL,
	"gateway_refund_id" text,
	"requested_by" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "refunds_refund_key_unique" UNIQUE("refund_key")
);
--> statement-breakpoint
ALTER TABLE "messages" ALTER COLUMN "step" DROP NOT NULL;--> statement-breakpoint
ALTER TABLE "orders" ADD COLUMN "coupon_discount_amount" bigint;--> statement-breakpoint
ALTER TABLE "orders" ADD COLUMN "coupon_expires_at" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "payment_attempts" ADD COLUMN "source" text DEFAULT 'shop' NOT NULL;--> statement-breakpoint
ALTER TABLE "payment_attempts" ADD COLUMN "attempt_number" integer;--> statement-breakpoint
ALTER TABLE "payment_attempts" ADD COLUMN "coupon_discount_amount" bigint DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "payment_attempts" ADD COLUMN "incentive_amount" bigint DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "payment_attempts" ADD COLUMN "recovery_id" text;--> statement-breakpoint
ALTER TABLE "payment_attempts" ADD COLUMN "message_id" text;--> statement-breakpoint
ALTER TABLE "payment_attempts" ADD COLUMN "click_id" text;--> statement-breakpoint
ALTER TABLE "payment_attempts" ADD COLUMN "gateway_payment_id" text;--> statement-breakpoint
ALTER TABLE "payment_attempts" ADD COLUMN "idempotency_key" text;--> statement-breakpoint
ALTER TABLE "payment_attempts" ADD COLUMN "next_action" jsonb;--> statement-breakpoint
ALTER TABLE "payment_attempts" ADD COLUMN "updated_at" timestamp with time zone DEFAULT now() NOT NULL;--> statement-breakpoint
CREATE INDEX "audit_log_subject_idx" ON "audit_log" USING btree ("subject","at");--> statement-breakpoint
CREATE INDEX "clicks_order_idx" ON "clicks" USING btree ("order_id","at");--> statement-breakpoint
CREATE UNIQUE INDEX "incentives_order_unique" ON "incentives" USING btree ("order_id");--> statement-breakpoint
CREATE INDEX "incentives_customer_idx" ON "incentives" USING btree ("customer_id","granted_at");--> statement-breakpoint
CREATE INDEX "incentives_cadence_idx" ON "incentives" USING btree ("cadence_name","granted_at");--> statement-breakpoint
CREATE UNIQUE INDEX "payments_external_unique" ON "payments" USING btree ("gateway","external_id");--> statement-breakpoint
CREATE INDEX "payments_order_idx" ON "payments" USING btree ("order_id");--> statement-breakpoint
CREATE INDEX "payments_paid_at_idx" ON "payments" USING btree ("paid_at");--> statement-breakpoint
CREATE INDEX "refunds_order_idx" ON "refunds" USING btree ("order_id");--> statement-breakpoint
CREATE INDEX "refunds_gateway_idx" ON "refunds" USING btree ("gateway_refund_id");--> statement-breakpoint
CREATE UNIQUE INDEX "payment_attempts_number_unique" ON "payment_attempts" USING btree ("order_id","attempt_number");--> statement-breakpoint
CREATE UNIQUE INDEX "payment_attempts_one_open" ON "payment_attempts" USING btree ("order_id") WHERE "payment_attempts"."status" = 'open';--> statement-breakpoint
CREATE INDEX "payment_attempts_gateway_payment_idx" ON "payment_attempts" USING btree ("gateway","gateway_payment_id");