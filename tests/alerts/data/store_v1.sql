-- cardmon alert store, schema version 1, made by monitor/alerts/store.py at 9ff13c1
PRAGMA user_version=1;
BEGIN TRANSACTION;
CREATE TABLE alert_events (
    event_id TEXT PRIMARY KEY,
    alert_id TEXT NOT NULL REFERENCES alerts (alert_id) DEFERRABLE INITIALLY DEFERRED,
    occurred_at TEXT NOT NULL,
    channel TEXT NOT NULL,
    terminal_id TEXT NOT NULL,
    merchant_id TEXT,
    txn_type TEXT NOT NULL,
    amount_minor INTEGER NOT NULL,
    currency TEXT NOT NULL,
    response_code TEXT,
    outcome TEXT NOT NULL,
    response_meaning TEXT NOT NULL,
    status TEXT NOT NULL,
    card_ref TEXT,
    pan_masked TEXT,
    entry_mode TEXT,
    latency_ms REAL,
    city TEXT,
    region TEXT,
    branch_id TEXT,
    severity TEXT NOT NULL,
    suggested_action TEXT NOT NULL
);
INSERT INTO "alert_events" VALUES('ev-0','al-3r3nsa4mvetgfasdmhly','2024-05-06T12:01:30.000000+00:00','ATM','ATM00042','BNKPARIS0001','withdrawal',13409,'USD','51','customer','Insufficient funds','completed','tok_9f8e7d6c5b4a39281706','411111******1111',NULL,NULL,'Paris','IDF',NULL,'high','Call the client and offer an emergency cash advance.');
INSERT INTO "alert_events" VALUES('ev-1','al-3r3nsa4mvetgfasdmhly','2024-05-06T12:03:30.000000+00:00','ATM','ATM00042','BNKPARIS0001','withdrawal',13409,'USD','51','customer','Insufficient funds','completed','tok_9f8e7d6c5b4a39281706','411111******1111',NULL,NULL,'Paris','IDF',NULL,'high','Call the client and offer an emergency cash advance.');
INSERT INTO "alert_events" VALUES('ev-2','al-3fcrurh3kbil22sewtww','2024-05-06T12:02:30.000000+00:00','ATM','ATM00042','BNKPARIS0001','withdrawal',13409,'USD','51','customer','Insufficient funds','completed','tok_9f8e7d6c5b4a39281706','411111******1111',NULL,NULL,'Paris','IDF',NULL,'medium','Call the client and offer an emergency cash advance.');
INSERT INTO "alert_events" VALUES('ev-3','al-galpjjrzebc6h5b3ahjx','2024-05-06T12:31:30.000000+00:00','ATM','ATM00042','BNKPARIS0001','withdrawal',13409,'USD','51','customer','Insufficient funds','completed','tok_9f8e7d6c5b4a39281706','411111******1111',NULL,NULL,'Paris','IDF',NULL,'high','Call the client and offer an emergency cash advance.');
CREATE TABLE alerts (
    alert_id TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    customer_name TEXT NOT NULL,
    tier TEXT NOT NULL,
    manager_id TEXT NOT NULL,
    manager_name TEXT NOT NULL,
    manager_email TEXT,
    manager_webhook_url TEXT,
    manager_timezone TEXT NOT NULL,
    severity TEXT NOT NULL,
    severity_rank INTEGER NOT NULL,
    suggested_action TEXT NOT NULL,
    window_start TEXT NOT NULL,
    window_end TEXT NOT NULL,
    first_event_at TEXT NOT NULL,
    last_event_at TEXT NOT NULL,
    event_count INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
INSERT INTO "alerts" VALUES('al-3r3nsa4mvetgfasdmhly','C-1001','Ada Lovelace','private','RM-017','Claire Martin','claire.martin@bank.example',NULL,'Europe/Paris','high',2,'Call the client and offer an emergency cash advance.','2024-05-06T12:00:00.000000+00:00','2024-05-06T12:10:00.000000+00:00','2024-05-06T12:01:30.000000+00:00','2024-05-06T12:03:30.000000+00:00',2,'2024-05-06T12:04:30.000000+00:00','2024-05-06T12:04:30.000000+00:00');
INSERT INTO "alerts" VALUES('al-3fcrurh3kbil22sewtww','C-2002','Grace Hopper','private','RM-042','Jonas Weber','jonas.weber@bank.example','http://127.0.0.1:9/hooks/rm','Europe/Berlin','medium',1,'Call the client and offer an emergency cash advance.','2024-05-06T12:00:00.000000+00:00','2024-05-06T12:10:00.000000+00:00','2024-05-06T12:02:30.000000+00:00','2024-05-06T12:02:30.000000+00:00',1,'2024-05-06T12:04:30.000000+00:00','2024-05-06T12:04:30.000000+00:00');
INSERT INTO "alerts" VALUES('al-galpjjrzebc6h5b3ahjx','C-3003','Alan Turing','gold','RM-017','Claire Martin','claire.martin@bank.example',NULL,'Europe/Paris','high',2,'Call the client and offer an emergency cash advance.','2024-05-06T12:30:00.000000+00:00','2024-05-06T12:40:00.000000+00:00','2024-05-06T12:31:30.000000+00:00','2024-05-06T12:31:30.000000+00:00',1,'2024-05-06T12:04:30.000000+00:00','2024-05-06T12:04:30.000000+00:00');
CREATE TABLE deliveries (
    delivery_id INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id TEXT NOT NULL REFERENCES alerts (alert_id) DEFERRABLE INITIALLY DEFERRED,
    channel TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    last_error TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    sent_at TEXT,
    UNIQUE (alert_id, channel)
);
INSERT INTO "deliveries" VALUES(1,'al-3r3nsa4mvetgfasdmhly','email','sent',1,'2024-05-06T12:07:30.000000+00:00',NULL,'2024-05-06T12:04:30.000000+00:00','2024-05-06T12:05:31.000000+00:00','2024-05-06T12:05:31.000000+00:00');
INSERT INTO "deliveries" VALUES(2,'al-3r3nsa4mvetgfasdmhly','jsonl','sent',1,'2024-05-06T12:07:30.000000+00:00',NULL,'2024-05-06T12:04:30.000000+00:00','2024-05-06T12:05:32.000000+00:00','2024-05-06T12:05:32.000000+00:00');
INSERT INTO "deliveries" VALUES(3,'al-3fcrurh3kbil22sewtww','email','failed',1,'2024-05-06T12:07:30.000000+00:00','ConnectionRefusedError: [Errno 111] Connect call failed','2024-05-06T12:04:30.000000+00:00','2026-11-29T18:57:35.517189+00:00',NULL);
INSERT INTO "deliveries" VALUES(4,'al-3fcrurh3kbil22sewtww','webhook','failed',1,'2024-05-06T12:07:30.000000+00:00','ConnectionRefusedError: [Errno 111] Connect call failed','2024-05-06T12:04:30.000000+00:00','2026-11-29T18:57:35.517227+00:00',NULL);
INSERT INTO "deliveries" VALUES(5,'al-3fcrurh3kbil22sewtww','jsonl','failed',1,'2024-05-06T12:07:30.000000+00:00','ConnectionRefusedError: [Errno 111] Connect call failed','2024-05-06T12:04:30.000000+00:00','2026-11-29T18:57:35.517244+00:00',NULL);
INSERT INTO "deliveries" VALUES(6,'al-galpjjrzebc6h5b3ahjx','email','pending',0,'2024-05-06T12:07:30.000000+00:00',NULL,'2024-05-06T12:04:30.000000+00:00','2024-05-06T12:04:30.000000+00:00',NULL);
INSERT INTO "deliveries" VALUES(7,'al-galpjjrzebc6h5b3ahjx','jsonl','pending',0,'2024-05-06T12:07:30.000000+00:00',NULL,'2024-05-06T12:04:30.000000+00:00','2024-05-06T12:04:30.000000+00:00',NULL);
CREATE INDEX alerts_by_customer ON alerts (customer_id, window_start);
CREATE INDEX alert_events_by_alert ON alert_events (alert_id, occurred_at);
CREATE INDEX deliveries_due ON deliveries (status, next_attempt_at);
DELETE FROM "sqlite_sequence";
INSERT INTO "sqlite_sequence" VALUES('deliveries',7);
COMMIT;
