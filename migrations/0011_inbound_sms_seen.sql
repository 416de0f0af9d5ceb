CREATE TABLE "inbound_sms_seen" (
	"message_sid" text PRIMARY KEY NOT NULL,
	"received_at" timestamp with time zone NOT NULL
);
