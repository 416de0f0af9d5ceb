-- Refunds recorded before this column were requested with version 1 references; later rows name
-- their version explicitly (no default, so a writer cannot forget it).
ALTER TABLE "refunds" ADD COLUMN "key_version" integer DEFAULT 1 NOT NULL;--> statement-breakpoint
ALTER TABLE "refunds" ALTER COLUMN "key_version" DROP DEFAULT;
