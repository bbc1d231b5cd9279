// The runbook's stack as a baseline for `make bench-compare`: Node + Express + pg serving
// GET /v1/lists/:id. Same token check as the API (HS256, its key id, issuer, audience, a
// required expiry with 5 s of leeway, then the user's token version) and the same JSON. The
// list is read the way the API read it before it became one query (the list with the
// caller's role, its items, its members with pending invitations: three round trips after
// the token's version), or, with LIST_QUERY set (the API's own query text, `$1` the list,
// `$2` the user, `$3` the token's version), the way the API reads it now: one round trip, the
// version checked in the statement, a row per item and per member beside the list's row.
// Only this route: the bench reads one list.
//
//   DATABASE_URL=postgres://... JWT_SECRET=... PORT=8080 PG_POOL_SIZE=10 [LIST_QUERY=...] node server.js
'use strict';

const crypto = require('node:crypto');
const express = require('express');
const jwt = require('jsonwebtoken');
const { Pool, types } = require('pg');

// Timestamps as PostgreSQL has them (microseconds), in RFC 3339 as the API writes them, not
// JavaScript Dates (milliseconds).
types.setTypeParser(1184, (text) => text.replace(' ', 'T').replace(/([+-]\d\d)$/, '$1:00'));

const required = (name) => {
  const value = process.env[name];
  if (!value) {
    console.error(`${name} is required`);
    process.exit(2);
  }
  return value;
};

const pool = new Pool({
  connectionString: required('DATABASE_URL'),
  max: Number(process.env.PG_POOL_SIZE || 10),
});
const secret = required('JWT_SECRET');
// The API's key id: the first 8 bytes of the secret's SHA-256, in hex.
const kid = crypto.createHash('sha256').update(secret).digest('hex').slice(0, 16);
const oneQuery = process.env.LIST_QUERY;
const port = Number(process.env.PORT || 8080);
const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

const LIST = `SELECT l.id, l.owner_id, l.name, l.created_at, l.updated_at, m.role
  FROM lists l JOIN list_members m ON m.list_id = l.id AND m.user_id = $2 WHERE l.id = $1`;
const ITEMS = `SELECT id, name, quantity, unit, category, note, checked, position, created_at,
  updated_at FROM items WHERE list_id = $1 ORDER BY position, created_at`;
const MEMBERS = `SELECT user_id, email, role FROM (
    SELECT m.user_id, u.email, m.role, m.added_at FROM list_members m
      JOIN users u ON u.id = m.user_id WHERE m.list_id = $1
    UNION ALL
    SELECT user_id, email, role, invited_at FROM list_invitations WHERE list_id = $1
  ) AS everyone ORDER BY role DESC, added_at`;

const app = express();
app.disable('x-powered-by');
app.disable('etag');

app.get('/v1/lists/:id', async (req, res) => {
  const header = req.get('authorization') || '';
  let claims;
  try {
    const token = jwt.verify(header.replace(/^Bearer /, ''), secret, {
      algorithms: ['HS256'],
      issuer: 'listacompra-api',
      audience: 'listacompra',
      clockTolerance: 5,
      complete: true,
    });
    if ((token.header.kid !== undefined && token.header.kid !== kid)
      || typeof token.payload.exp !== 'number' || typeof token.payload.sub !== 'string') {
      throw new Error('invalid token');
    }
    claims = token.payload;
  } catch {
    return res.status(401).json({ error: 'invalid_token' });
  }
  if (!uuid.test(req.params.id)) {
    return res.status(404).json({ error: 'not_found' });
  }
  // With LIST_QUERY, its statements are prepared once per connection (named), as sqlx
  // prepares the API's; the runbook's queries are sent as the runbook's stack sends them.
  const revoked = async () => {
    const version = await pool.query({
      name: oneQuery ? 'token_version' : undefined,
      text: 'SELECT token_version FROM users WHERE id = $1',
      values: [claims.sub],
    });
    return version.rowCount === 0 || Number(version.rows[0].token_version) !== (claims.ver || 0);
  };
  try {
    if (oneQuery) {
      // One row per item, then per member or invitation, beside the list's columns; none
      // for a revoked token or a list the caller cannot see, which a second query tells apart.
      const { rows } = await pool.query({
        name: 'list_detail', text: oneQuery, values: [req.params.id, claims.sub, claims.ver || 0],
      });
      if (rows.length === 0) {
        return await revoked()
          ? res.status(401).json({ error: 'invalid_token' })
          : res.status(404).json({ error: 'not_found' });
      }
      const [first] = rows;
      const items = rows.filter((r) => r.member === false).map((r) => ({
        id: r.entry_id, name: r.item_name, quantity: r.quantity, unit: r.unit,
        category: r.category, note: r.note, checked: r.checked, position: r.position,
        created_at: r.item_created_at, updated_at: r.item_updated_at,
      }));
      const members = rows.filter((r) => r.member === true)
        .map((r) => ({ user_id: r.entry_id, email: r.email, role: r.member_role }));
      return res.json({
        id: first.id, owner_id: first.owner_id, name: first.name,
        created_at: first.created_at, updated_at: first.updated_at, role: first.role,
        items, members,
      });
    }
    if (await revoked()) {
      return res.status(401).json({ error: 'invalid_token' });
    }
    const list = await pool.query(LIST, [req.params.id, claims.sub]);
    if (list.rowCount === 0) {
      return res.status(404).json({ error: 'not_found' });
    }
    const items = await pool.query(ITEMS, [req.params.id]);
    const members = await pool.query(MEMBERS, [req.params.id]);
    return res.json({ ...list.rows[0], items: items.rows, members: members.rows });
  } catch (e) {
    console.error(e.message);
    return res.status(503).json({ error: 'unavailable' });
  }
});

app.listen(port, '127.0.0.1', () => console.log(`listening on 127.0.0.1:${port}`));
