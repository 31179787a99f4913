-- A node's SQLite database as the image before the Alembic migrations made it
-- (deltaml.services.store.Store.create_all, commit cc940ba), with one row in most tables.
-- tests/deploy/test_upgrade.py loads it and upgrades it with `deltaml db upgrade`.
BEGIN TRANSACTION;
CREATE TABLE checkpoints (
	request_id INTEGER NOT NULL, 
	round INTEGER NOT NULL, 
	data TEXT NOT NULL, 
	updated_at FLOAT NOT NULL, 
	PRIMARY KEY (request_id)
);
CREATE TABLE documents (
	namespace VARCHAR(40) NOT NULL, 
	"key" VARCHAR(200) NOT NULL, 
	value JSON NOT NULL, 
	updated_at FLOAT NOT NULL, 
	PRIMARY KEY (namespace, "key")
);
INSERT INTO "documents" VALUES('datasets','diabetes','{"path": "/data/diabetes.csv", "rows": 117}',1796428800.0);
INSERT INTO "documents" VALUES('requests','1','{"status": "FINISHED", "spec": {"rounds": 2}}',1796428800.0);
CREATE TABLE events (
	id INTEGER NOT NULL, 
	request_id INTEGER NOT NULL, 
	at FLOAT NOT NULL, 
	kind VARCHAR(40) NOT NULL, 
	data JSON NOT NULL, 
	PRIMARY KEY (id)
);
INSERT INTO "events" VALUES(1,1,1796428800.0,'round','{"round": 1}');
CREATE TABLE jobs (
	id INTEGER NOT NULL, 
	request_id INTEGER NOT NULL, 
	party VARCHAR(42) NOT NULL, 
	kind VARCHAR(40) NOT NULL, 
	payload TEXT NOT NULL, 
	status VARCHAR(10) NOT NULL, 
	reply TEXT, 
	created_at FLOAT NOT NULL, 
	taken_at FLOAT, 
	done_at FLOAT, 
	PRIMARY KEY (id)
);
CREATE TABLE nonces (
	address VARCHAR(42) NOT NULL, 
	nonce VARCHAR(130) NOT NULL, 
	expires_at FLOAT NOT NULL, 
	PRIMARY KEY (address, nonce)
);
INSERT INTO "nonces" VALUES('0xabababababababababababababababababababab','n1',4102444800.0);
CREATE TABLE offers (
	request_id INTEGER NOT NULL, 
	owner VARCHAR(42) NOT NULL, 
	status VARCHAR(20) NOT NULL, 
	dataset VARCHAR(200) NOT NULL, 
	role VARCHAR(20) NOT NULL, 
	updated_at FLOAT NOT NULL, 
	PRIMARY KEY (request_id, owner)
);
CREATE TABLE owners (
	address VARCHAR(42) NOT NULL, 
	name VARCHAR(200) NOT NULL, 
	profile JSON NOT NULL, 
	min_reward_wei VARCHAR(80) NOT NULL, 
	registered_at FLOAT NOT NULL, 
	last_seen FLOAT NOT NULL, 
	PRIMARY KEY (address)
);
INSERT INTO "owners" VALUES('0xabababababababababababababababababababab','owner 1','{"datasets": []}','0',1796428800.0,1796428800.0);
CREATE TABLE requests (
	id INTEGER NOT NULL, 
	buyer VARCHAR(42) NOT NULL, 
	chain_request_id BIGINT NOT NULL, 
	spec JSON NOT NULL, 
	requirements JSON NOT NULL, 
	public_key JSON NOT NULL, 
	initial_model JSON NOT NULL, 
	deposit_wei VARCHAR(80) NOT NULL, 
	status VARCHAR(20) NOT NULL, 
	error TEXT NOT NULL, 
	result JSON, 
	created_at FLOAT NOT NULL, 
	updated_at FLOAT NOT NULL, 
	PRIMARY KEY (id)
);
INSERT INTO "requests" VALUES(1,'0xcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd',1,'{"rounds": 2}','{}','{"n": "77"}','{}','1000000000000000000','FINISHED','','null',1796428800.0,1796428800.0);
CREATE INDEX ix_requests_buyer ON requests (buyer);
CREATE INDEX ix_jobs_party ON jobs (party);
CREATE INDEX ix_jobs_status ON jobs (status);
CREATE INDEX ix_jobs_request_id ON jobs (request_id);
CREATE INDEX ix_events_request_id ON events (request_id);
CREATE INDEX ix_nonces_expires_at ON nonces (expires_at);
COMMIT;
