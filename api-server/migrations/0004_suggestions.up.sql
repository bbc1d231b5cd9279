-- Revision 4: AI suggestion requests and their results.
CREATE TABLE suggestion_requests (
    id           uuid PRIMARY KEY,
    list_id      uuid NOT NULL REFERENCES lists (id) ON DELETE CASCADE,
    requested_by uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    status       text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'done', 'failed')),
    provider     text,
    suggestions  jsonb,
    error        text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz
);
CREATE INDEX suggestion_requests_list_idx ON suggestion_requests (list_id, created_at);
