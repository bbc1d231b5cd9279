-- Revision 2: shopping lists, their members (owner and member roles) and items.
CREATE TABLE lists (
    id         uuid PRIMARY KEY,
    owner_id   uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name       text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE list_members (
    list_id  uuid NOT NULL REFERENCES lists (id) ON DELETE CASCADE,
    user_id  uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role     text NOT NULL CHECK (role IN ('owner', 'member')),
    added_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (list_id, user_id)
);
CREATE INDEX list_members_user_idx ON list_members (user_id, list_id);

CREATE TABLE items (
    id         uuid PRIMARY KEY,
    list_id    uuid NOT NULL REFERENCES lists (id) ON DELETE CASCADE,
    name       text NOT NULL,
    quantity   double precision NOT NULL DEFAULT 1,
    unit       text,
    category   text,
    note       text,
    checked    boolean NOT NULL DEFAULT false,
    position   integer NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX items_list_position_idx ON items (list_id, position);
