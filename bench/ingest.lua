-- wrk script: cycles through pre-signed Twilio webhook requests, one per line:
-- <X-Twilio-Signature>\t<form body>
-- Each wrk thread takes its own slice of the file, so no request is sent twice
-- while the file lasts (a repeat would be a cheap duplicate, flattering the hub).
local threads = 0
local requests = {}
local index = 0

function setup(thread)
  thread:set("slice", threads)
  threads = threads + 1
end

function init(args)
  local file = io.open(args[1], "r")
  for line in file:lines() do
    local tab = line:find("\t", 1, true)
    requests[#requests + 1] = {line:sub(1, tab - 1), line:sub(tab + 1)}
  end
  file:close()
  local slices = tonumber(args[2]) or 1
  index = math.floor(#requests / slices) * slice
end

function request()
  index = index % #requests + 1
  local r = requests[index]
  return wrk.format("POST", "/webhooks/twilio/messaging",
    {["Content-Type"] = "application/x-www-form-urlencoded", ["X-Twilio-Signature"] = r[1]}, r[2])
end
