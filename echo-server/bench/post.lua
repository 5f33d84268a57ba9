-- wrk script: POST a body of N bytes on every request (`wrk ... -s post.lua URL -- N`).
-- wrk calls init(args) once per thread, then formats the one request it repeats. No
-- response() hook on purpose: wrk would hand every response to Lua, which costs more
-- than the echo; non-2xx answers are counted in wrk's own summary.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/octet-stream"

function init(args)
  local size = tonumber(args[1])
  if size == nil then
    error("usage: wrk ... -s post.lua URL -- BODY_BYTES")
  end
  wrk.body = string.rep("x", size)
end
