-- serverscope's endpoints for Apache httpd, through Debian's mod_lua:
--   GET /                            -> 200 "hello from serverscope\n"
--   GET /work?cpu_ms=&io_ms=&bytes=  -> burn cpu_ms of this thread's CPU time, sleep io_ms
--                                       (r.usleep blocks the worker, as in the Python
--                                       models), answer exactly `bytes` bytes of 'x'
-- Plain Lua has no per-thread CPU clock and os.clock() is the whole process's, which
-- under the threaded MPMs (worker, event) runs as fast as all busy threads together: each
-- request would burn a fraction of cpu_ms. So the thread's own CPU time is read from
-- /proc/thread-self/schedstat (nanoseconds, updated at each scheduler tick: a burn may
-- run up to one tick, 1-4 ms, long); os.clock() only where that file cannot be read.
-- Responses carry X-Worker: <pid of the serving process>, like the other originals.
-- A cpu_ms over --max-cpu-ms is 400: the launcher writes it into serverscope_limits.lua
-- beside this file (LuaPackagePath); 10,000 (the models' default) without it. mod_lua has
-- no way to see the client leave (no connection state, and r:flush() would send this
-- response's head first), so a burn runs to its end; Apache itself drops the rest of a
-- pipeline once a write to the client has failed.
local ok, limits = pcall(require, "serverscope_limits")
local MAX = {
  cpu_ms = ok and type(limits) == "table" and limits.max_cpu_ms or 10000,
  io_ms = 60000,
  bytes = 16 * 1024 * 1024,
}

local function read_number(path)
  local f = io.open(path, "r")
  if not f then return nil end
  local n = f:read("n")
  f:close()
  return n
end

local PID = tostring(read_number("/proc/self/stat") or "")

local function thread_cpu()
  local ns = read_number("/proc/thread-self/schedstat")
  if ns then return ns / 1e9 end
  return os.clock()
end

local function reply(r, status, ctype, body)
  r.status = status
  r.headers_out["X-Worker"] = PID
  r.content_type = ctype
  r.headers_out["Content-Length"] = tostring(#body)
  if r.method ~= "HEAD" then r:write(body) end
  return apache2.OK
end

local function burn(ms)
  if ms <= 0 then return end
  local stop = thread_cpu() + ms / 1000
  local x = 0
  while thread_cpu() < stop do
    for i = 1, 2000 do x = x ~ i end
  end
end

function handle(r)
  if r.method ~= "GET" and r.method ~= "HEAD" then
    return reply(r, 405, "text/plain", "only GET and HEAD\n")
  end
  if r.uri == "/" then return reply(r, 200, "text/plain", "hello from serverscope\n") end
  if r.uri ~= "/work" then
    return reply(r, 404, "text/plain", "not found; try / or /work?cpu_ms=&io_ms=&bytes=\n")
  end
  local p = { cpu_ms = 0, io_ms = 0, bytes = 0 }
  local query = r.args or ""
  if query ~= "" then
    for pair in (query .. "&"):gmatch("([^&]*)&") do
      local key, raw = pair:match("^([^=]*)=(.*)$")
      if not key then return reply(r, 400, "text/plain", "malformed query string\n") end
      if not MAX[key] then
        return reply(r, 400, "text/plain",
          "unknown parameter '" .. key .. "'; use cpu_ms, io_ms, bytes\n")
      end
      local v = tonumber(raw)
      if v == nil or v ~= v then
        return reply(r, 400, "text/plain", key .. " must be a number, got '" .. raw .. "'\n")
      end
      if v < 0 or v > MAX[key] then
        return reply(r, 400, "text/plain", string.format(
          "%s must be between 0 and %g, got %s\n", key, MAX[key], raw))
      end
      p[key] = v
    end
  end
  if p.bytes ~= math.floor(p.bytes) then
    return reply(r, 400, "text/plain", "bytes must be a whole number\n")
  end
  burn(p.cpu_ms)
  if p.io_ms > 0 then r.usleep(math.floor(p.io_ms * 1000)) end -- microseconds
  return reply(r, 200, "application/octet-stream", string.rep("x", math.floor(p.bytes)))
end
