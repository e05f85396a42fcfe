-- Counts responses per X-Worker header value (the pid that answered) and
-- non-200 statuses; done() prints "X-WORKER <value> <count>" lines and
-- "STATUS <code> <count>" lines for bench/run.mjs to parse. Works with any
-- -t: every thread keeps its own tables, done() sums them.
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  workers = {}
  statuses = {}
end

function response(status, headers, body)
  local w = headers["X-Worker"] or headers["x-worker"] or "none"
  workers[w] = (workers[w] or 0) + 1
  if status ~= 200 then
    statuses[status] = (statuses[status] or 0) + 1
  end
end

function done(summary, latency, requests)
  local w, s = {}, {}
  for _, thread in ipairs(threads) do
    for k, v in pairs(thread:get("workers")) do w[k] = (w[k] or 0) + v end
    for k, v in pairs(thread:get("statuses")) do s[k] = (s[k] or 0) + v end
  end
  for k, v in pairs(w) do io.write(string.format("X-WORKER %s %d\n", k, v)) end
  for k, v in pairs(s) do io.write(string.format("STATUS %s %d\n", k, v)) end
end
