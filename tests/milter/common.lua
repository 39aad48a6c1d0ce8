-- Shared helpers for the miltertest scripts.  The driver passes the milter
-- address as the global "milter" (miltertest -D milter=inet:PORT@127.0.0.1).

function must(ok, what)
  if ok ~= nil then error(what .. " failed: " .. tostring(ok)) end
end

function open_conn(client_name, client_addr)
  local conn = mt.connect(milter, 10, 0.5)
  if conn == nil then error("cannot connect to " .. milter) end
  must(mt.conninfo(conn, client_name, client_addr), "conninfo")
  return conn
end

function expect(conn, want, what)
  local got = mt.getreply(conn)
  if got ~= want then
    error(what .. ": expected reply " .. tostring(want) .. ", got " .. tostring(got))
  end
end

-- One whole transaction; returns the end-of-message reply.
function transaction(conn, from, rcpts, headers, body)
  must(mt.mailfrom(conn, from), "mailfrom")
  for _, r in ipairs(rcpts) do must(mt.rcptto(conn, r), "rcptto") end
  must(mt.data(conn), "data")
  expect(conn, SMFIR_CONTINUE, "DATA")
  for _, h in ipairs(headers) do must(mt.header(conn, h[1], h[2]), "header") end
  must(mt.eoh(conn), "eoh")
  for _, chunk in ipairs(body) do must(mt.bodystring(conn, chunk), "body") end
  must(mt.eom(conn), "eom")
  return mt.getreply(conn)
end
