CREATE TABLE "outbound_events" (
	"id" text PRIMARY KEY NOT NULL,
	"type" text NOT NULL,
	"order_id" text NOT NULL,
	"sequence" integer NOT NULL,
	"data" jsonb NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "messages" ADD COLUMN "after_payment_at" timestamp with time zone;--> statement-breakpoint
CREATE UNIQUE INDEX "outbound_events_order_sequence_unique" ON "outbound_events" USING btree ("order_id","sequence");--> statement-breakpoint
CREATE INDEX "outbound_events_created_idx" ON "outbound_events" USING btree ("created_at","id");