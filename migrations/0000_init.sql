CREATE TABLE "cadences" (
	"name" text NOT NULL,
	"version" integer NOT NULL,
	"definition" jsonb NOT NULL,
	"source" text,
	"active" boolean DEFAULT false NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "cadences_name_version_pk" PRIMARY KEY("name","version")
);
--> statement-breakpoint
CREATE TABLE "customers" (
	"id" text PRIMARY KEY NOT NULL,
	"name" text,
	"email" text,
	"phone" text,
	"locale" text,
	"timezone" text,
	"email_bad_reason" text,
	"phone_bad_reason" text,
	"updated_at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
CREATE TABLE "events" (
	"id" text PRIMARY KEY NOT NULL,
	"type" text NOT NULL,
	"order_id" text,
	"customer_id" text,
	"occurred_at" timestamp with time zone NOT NULL,
	"received_at" timestamp with time zone DEFAULT now() NOT NULL,
	"outcome" text NOT NULL,
	"payload" jsonb NOT NULL
);
--> statement-breakpoint
CREATE TABLE "messages" (
	"id" text PRIMARY KEY NOT NULL,
	"recovery_id" text NOT NULL,
	"order_id" text NOT NULL,
	"customer_id" text NOT NULL,
	"step" integer NOT NULL,
	"channel" text NOT NULL,
	"template" text NOT NULL,
	"locale" text,
	"status" text NOT NULL,
	"to_address" text,
	"reason" text,
	"provider_id" text,
	"link_token" text,
	"link_expires_at" timestamp with time zone,
	"link_revoked_at" timestamp with time zone,
	"attempts" integer DEFAULT 0 NOT NULL,
	"claim_id" text,
	"planned_at" timestamp with time zone,
	"claimed_at" timestamp with time zone,
	"sent_at" timestamp with time zone,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "orders" (
	"id" text PRIMARY KEY NOT NULL,
	"customer_id" text NOT NULL,
	"amount" bigint NOT NULL,
	"currency" text NOT NULL,
	"description" text,
	"coupon_code" text,
	"requested_cadence" text,
	"status" text NOT NULL,
	"state_at" timestamp with time zone NOT NULL,
	"paid_at" timestamp with time zone,
	"cancelled_at" timestamp with time zone,
	"last_failure_code" text,
	"last_failure_category" text,
	"last_failure_message" text,
	"last_gateway" text,
	"last_method" text,
	"abandon_check_at" timestamp with time zone,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "payment_attempts" (
	"id" text PRIMARY KEY NOT NULL,
	"order_id" text NOT NULL,
	"event_id" text,
	"gateway" text,
	"method" text,
	"status" text NOT NULL,
	"amount" bigint NOT NULL,
	"currency" text NOT NULL,
	"failure_code" text,
	"failure_category" text,
	"failure_message" text,
	"occurred_at" timestamp with time zone NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "recoveries" (
	"id" text PRIMARY KEY NOT NULL,
	"order_id" text NOT NULL,
	"customer_id" text NOT NULL,
	"cadence_name" text NOT NULL,
	"cadence_version" integer NOT NULL,
	"failure_category" text NOT NULL,
	"state" text NOT NULL,
	"step_index" integer DEFAULT 0 NOT NULL,
	"next_run_at" timestamp with time zone,
	"wake_seq" integer DEFAULT 0 NOT NULL,
	"started_at" timestamp with time zone NOT NULL,
	"expires_at" timestamp with time zone NOT NULL,
	"ended_at" timestamp with time zone,
	"ended_reason" text
);
--> statement-breakpoint
CREATE TABLE "suppressions" (
	"channel" text NOT NULL,
	"address" text NOT NULL,
	"reason" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "suppressions_channel_address_pk" PRIMARY KEY("channel","address")
);
--> statement-breakpoint
CREATE UNIQUE INDEX "cadences_one_active" ON "cadences" USING btree ("name") WHERE "cadences"."active";--> statement-breakpoint
CREATE INDEX "events_order_idx" ON "events" USING btree ("order_id","occurred_at");--> statement-breakpoint
CREATE UNIQUE INDEX "messages_recovery_step_unique" ON "messages" USING btree ("recovery_id","step");--> statement-breakpoint
CREATE UNIQUE INDEX "messages_link_token_unique" ON "messages" USING btree ("link_token");--> statement-breakpoint
CREATE INDEX "messages_order_idx" ON "messages" USING btree ("order_id");--> statement-breakpoint
CREATE INDEX "messages_customer_sent_idx" ON "messages" USING btree ("customer_id","sent_at");--> statement-breakpoint
CREATE INDEX "orders_customer_idx" ON "orders" USING btree ("customer_id");--> statement-breakpoint
CREATE INDEX "orders_abandon_idx" ON "orders" USING btree ("abandon_check_at") WHERE "orders"."abandon_check_at" is not null;--> statement-breakpoint
CREATE INDEX "payment_attempts_order_idx" ON "payment_attempts" USING btree ("order_id","occurred_at");--> statement-breakpoint
CREATE UNIQUE INDEX "recoveries_order_unique" ON "recoveries" USING btree ("order_id");--> statement-breakpoint
CREATE INDEX "recoveries_due_idx" ON "recoveries" USING btree ("next_run_at") WHERE "recoveries"."state" = 'active';--> statement-breakpoint
CREATE INDEX "recoveries_customer_idx" ON "recoveries" USING btree ("customer_id");