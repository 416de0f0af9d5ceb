CREATE TABLE "report_dirty" (
	"bucket" timestamp with time zone PRIMARY KEY NOT NULL
);
--> statement-breakpoint
CREATE TABLE "report_rollup" (
	"bucket" timestamp with time zone NOT NULL,
	"currency" text NOT NULL,
	"dim" text NOT NULL,
	"value" text NOT NULL,
	"cost_currency" text NOT NULL,
	"orders_entered" integer DEFAULT 0 NOT NULL,
	"messaged" integer DEFAULT 0 NOT NULL,
	"clicked" integer DEFAULT 0 NOT NULL,
	"recovered_count" integer DEFAULT 0 NOT NULL,
	"recovered_amount" bigint DEFAULT 0 NOT NULL,
	"refunded_amount" bigint DEFAULT 0 NOT NULL,
	"organic_amount" bigint DEFAULT 0 NOT NULL,
	"incentive_amount" bigint DEFAULT 0 NOT NULL,
	"messages_sent" integer DEFAULT 0 NOT NULL,
	"cost_micros" bigint DEFAULT 0 NOT NULL,
	CONSTRAINT "report_rollup_dim_bucket_currency_value_cost_currency_pk" PRIMARY KEY("dim","bucket","currency","value","cost_currency")
);
--> statement-breakpoint
CREATE TABLE "report_state" (
	"id" integer PRIMARY KEY NOT NULL,
	"refreshed_at" timestamp with time zone
);
--> statement-breakpoint
ALTER TABLE "messages" ADD COLUMN "cost_micros" bigint;--> statement-breakpoint
ALTER TABLE "messages" ADD COLUMN "cost_currency" text;--> statement-breakpoint
ALTER TABLE "messages" ADD COLUMN "cost_source" text;--> statement-breakpoint
ALTER TABLE "recoveries" ADD COLUMN "holdout" boolean DEFAULT false NOT NULL;--> statement-breakpoint
ALTER TABLE "recoveries" ADD COLUMN "currency" text;--> statement-breakpoint
ALTER TABLE "recoveries" ADD COLUMN "failed_method" text;--> statement-breakpoint
ALTER TABLE "recoveries" ADD COLUMN "recovered_at" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "recoveries" ADD COLUMN "recovered_attribution" text;--> statement-breakpoint
ALTER TABLE "recoveries" ADD COLUMN "recovered_step" integer;--> statement-breakpoint
ALTER TABLE "recoveries" ADD COLUMN "recovered_channel" text;--> statement-breakpoint
ALTER TABLE "recoveries" ADD COLUMN "recovered_value" bigint;--> statement-breakpoint
ALTER TABLE "refunds" ADD COLUMN "succeeded_at" timestamp with time zone;--> statement-breakpoint
CREATE INDEX "report_rollup_bucket_idx" ON "report_rollup" USING btree ("bucket");--> statement-breakpoint
CREATE INDEX "clicks_at_idx" ON "clicks" USING btree ("at");--> statement-breakpoint
CREATE INDEX "messages_sent_idx" ON "messages" USING btree ("sent_at");--> statement-breakpoint
CREATE INDEX "payments_created_idx" ON "payments" USING btree ("created_at");--> statement-breakpoint
CREATE INDEX "recoveries_started_idx" ON "recoveries" USING btree ("started_at");--> statement-breakpoint
CREATE INDEX "recoveries_recovered_idx" ON "recoveries" USING btree ("recovered_at","currency","started_at","cadence_name","failure_category","failed_method","recovered_step","recovered_channel") WHERE "recoveries"."recovered_attribution" in ('clicked', 'influenced') and not "recoveries"."holdout";--> statement-breakpoint
CREATE INDEX "refunds_updated_idx" ON "refunds" USING btree ("updated_at");--> statement-breakpoint
-- Backfill what earlier versions recorded elsewhere (the columns above are new).
UPDATE "recoveries" r SET "currency" = o."currency", "failed_method" = o."last_method" FROM "orders" o WHERE o."id" = r."order_id";--> statement-breakpoint
UPDATE "recoveries" r SET "recovered_at" = p."paid_at", "recovered_attribution" = p."attribution", "recovered_step" = p."step",
  "recovered_channel" = p."channel", "recovered_value" = p."amount" + p."incentive_amount"
  FROM "payments" p WHERE p."recovery_id" = r."id" AND NOT p."duplicate" AND r."state" = 'recovered';--> statement-breakpoint
UPDATE "messages" SET "cost_micros" = "price_amount" * 10000, "cost_currency" = "price_currency", "cost_source" = 'provider' WHERE "price_amount" IS NOT NULL;--> statement-breakpoint
UPDATE "refunds" SET "succeeded_at" = "updated_at" WHERE "status" = 'succeeded';--> statement-breakpoint
INSERT INTO "report_state" ("id", "refreshed_at") VALUES (1, NULL);
