-- wrk script for the fastimagecache bench: cycles through a list of request
-- paths (one per line in the file given as the first script argument), the
-- list split between wrk's threads, and prints the summary as one JSON line.
--
-- Usage: wrk -t T -c C -d Ds -s wrk-paths.lua URL -- PATHS_FILE T [LIMIT C]
--
-- With LIMIT (one thread only), the run ends once LIMIT responses have come
-- back: request() is called once per connection at the start and then once
-- per completed response, so at call LIMIT + C exactly LIMIT responses are
-- complete. The script then sends SIGINT to wrk itself (through LuaJIT's
-- FFI), which ends wrk's sleep early so its duration is the real one. The
-- caller pads the list with C extra paths for the requests cut short.
-- No response() callback on purpose: defining one makes wrk copy every body.

local thread_count = 0

function setup(thread)
  thread_count = thread_count + 1
  thread:set("thread_index", thread_count - 1)
end

local paths = {}
local next_index = 0
local calls = 0
local stop_at = 0
local ffi_ok, ffi = pcall(require, "ffi")
if ffi_ok then
  ffi.cdef[[ int kill(int pid, int sig); int getpid(void); ]]
end

function init(args)
  local file = args[1]
  local threads = tonumber(args[2]) or 1
  local limit = tonumber(args[3]) or 0
  local connections = tonumber(args[4]) or 0
  if limit > 0 and ffi_ok then stop_at = limit + connections end
  local i = 0
  for line in io.lines(file) do
    if line ~= "" then
      if i % threads == thread_index then table.insert(paths, line) end
      i = i + 1
    end
  end
  if #paths == 0 then
    for line in io.lines(file) do
      if line ~= "" then table.insert(paths, line) end
    end
  end
end

function request()
  next_index = next_index + 1
  if next_index > #paths then next_index = 1 end
  calls = calls + 1
  if calls == stop_at then
    ffi.C.kill(ffi.C.getpid(), 2) -- SIGINT: wrk's handler ends the run now
    wrk.thread:stop()
  end
  return wrk.format("GET", paths[next_index])
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests":%d,"durationUs":%d,"bytes":%d,"p50Us":%d,"p99Us":%d,' ..
    '"connectErrors":%d,"readErrors":%d,"writeErrors":%d,"timeouts":%d,"statusErrors":%d,"ffi":%s}\n',
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(99),
    e.connect, e.read, e.write, e.timeout, e.status, tostring(ffi_ok)))
end
