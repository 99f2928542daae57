-- wrk script: one token per request, rotating over a file of 1,000 tokens.
--   wrk ... -s rotate.lua -- TOKENS_FILE MODE [CALLER_TOKEN]
-- MODE: bearer  GET /items/<n> with "Authorization: Bearer <token>" (gateway, nginx, upstream)
--       verify  POST /v1/verify {"token","method","path"} as the caller (tokentrail:verify)
--       authz   GET /v1/authz with the token and X-Original-Method/X-Original-URI, as nginx sends
-- Every request is rendered once in init(); request() only picks the next one, so the script
-- costs wrk as little as possible.
local reqs = {}
local n = 0
local i = 0

function init(args)
  local file, mode, caller = args[1], args[2] or "bearer", args[3]
  local k = 0
  for token in io.lines(file) do
    if token ~= "" then
      k = k + 1
      local path = "/items/" .. k
      local r
      if mode == "bearer" then
        r = wrk.format("GET", path, { ["Host"] = "bench", ["Authorization"] = "Bearer " .. token })
      elseif mode == "verify" then
        local body = '{"token":"' .. token .. '","method":"GET","path":"' .. path .. '"}'
        r = wrk.format("POST", "/v1/verify", {
          ["Host"] = "bench",
          ["Authorization"] = "Bearer " .. caller,
          ["Content-Type"] = "application/json",
        }, body)
      elseif mode == "authz" then
        r = wrk.format("GET", "/v1/authz", {
          ["Host"] = "bench",
          ["Authorization"] = "Bearer " .. token,
          ["X-Original-Method"] = "GET",
          ["X-Original-URI"] = path,
        })
      else
        error("unknown mode " .. mode)
      end
      reqs[k] = r
    end
  end
  n = k
end

function request()
  i = i % n + 1
  return reqs[i]
end
