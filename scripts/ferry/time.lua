-- ferry.time: dates and times as APIs write them, in seconds since the
-- epoch (UTC).
--
--   time.parse("2024-05-01T12:00:00+02:00")  -> 1714557600
--   time.parse("2024-05-01")                 -> midnight UTC that day
--   time.format(1714557600)                  -> "2024-05-01T10:00:00Z"
--   time.days_from_civil(2024, 5, 1)         -> days since 1970-01-01
local M = {}

local DAY = 86400

-- Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
function M.days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local mp = (m + 9) % 12
  local doy = math.floor((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

-- Seconds since the epoch of an RFC 3339 date-time (or a YYYY-MM-DD date,
-- taken as midnight UTC), or nil.
function M.parse(text)
  if type(text) ~= "string" then return nil end
  local y, mo, d = text:match("^(%d%d%d%d)%-(%d%d)%-(%d%d)$")
  local hh, mi, ss, zone = "0", "0", "0", "Z"
  if not y then
    y, mo, d, hh, mi, ss, zone = text:match("^(%d%d%d%d)%-(%d%d)%-(%d%d)[Tt ](%d%d):(%d%d):(%d%d)%.?%d*(.*)$")
    if not y then return nil end
  end
  y, mo, d, hh, mi, ss = tonumber(y), tonumber(mo), tonumber(d), tonumber(hh), tonumber(mi), tonumber(ss)
  if mo < 1 or mo > 12 or d < 1 or d > 31 or hh > 23 or mi > 59 or ss > 60 then return nil end
  local offset = 0
  if zone ~= "Z" and zone ~= "z" then
    local sign, oh, om = zone:match("^([%+%-])(%d%d):?(%d%d)$")
    if not sign then return nil end
    offset = tonumber(oh) * 3600 + tonumber(om) * 60
    if sign == "-" then offset = -offset end
  end
  return M.days_from_civil(y, mo, d) * DAY + hh * 3600 + mi * 60 + ss - offset
end

-- "YYYY-MM-DDTHH:MM:SSZ" of seconds since the epoch (fractions dropped).
function M.format(t)
  return os.date("!%Y-%m-%dT%H:%M:%SZ", math.floor(t))
end

return M
