ALTER TABLE "gateway_events" ADD COLUMN "event" jsonb;--> statement-breakpoint
ALTER TABLE "gateway_events" ADD COLUMN "claimed_at" timestamp with time zone DEFAULT now() NOT NULL;--> statement-breakpoint
ALTER TABLE "gateway_events" ADD COLUMN "claims" integer DEFAULT 1 NOT NULL;--> statement-breakpoint
ALTER TABLE "payment_attempts" ADD COLUMN "checked_at" timestamp with time zone;--> statement-breakpoint
CREATE INDEX "gateway_events_unsettled_idx" ON "gateway_events" USING btree ("claimed_at") WHERE "gateway_events"."outcome" in ('processing', 'error');