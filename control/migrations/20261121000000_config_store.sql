-- Config store: every change is a revision; `changes` keeps the body before and after each
-- change (the history), `resources` the current body of every resource (what is loaded at start).
-- Portable SQL for SQLite and PostgreSQL: BIGINT/TEXT only, revision numbers and timestamps
-- (unix milliseconds) assigned by the control plane, JSON stored as TEXT.

CREATE TABLE revisions (
    revision BIGINT NOT NULL PRIMARY KEY,
    time_ms BIGINT NOT NULL,
    author TEXT NOT NULL,
    message TEXT NOT NULL
);

CREATE TABLE changes (
    revision BIGINT NOT NULL REFERENCES revisions (revision),
    kind TEXT NOT NULL,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    action TEXT NOT NULL,
    before_json TEXT NULL,
    after_json TEXT NULL,
    PRIMARY KEY (revision, kind, namespace, name)
);

-- The state at a revision is, per resource, its latest change at or before it.
CREATE INDEX changes_by_resource ON changes (kind, namespace, name, revision);

CREATE TABLE resources (
    kind TEXT NOT NULL,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    revision BIGINT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (kind, namespace, name)
);
