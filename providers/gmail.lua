-- Gmail: search and read the user's mail, and save drafts (never send).
--
-- HTTP shapes follow Google's Gmail API v1 description (APIs-guru
-- openapi-directory, googleapis.com/gmail/v1/openapi.yaml; server
-- https://gmail.googleapis.com, paths carry the /gmail/v1 prefix):
--   search_messages   GET  /gmail/v1/users/me/messages            (gmail.users.messages.list)
--                     then GET /gmail/v1/users/me/messages/{id}?format=metadata per message
--                     (gmail.users.messages.get): a list answers ids only
--   get_message       GET  /gmail/v1/users/me/messages/{id}?format=full  (gmail.users.messages.get)
--   create_draft      POST /gmail/v1/users/me/drafts               (gmail.users.drafts.create)
--                     body {"message": {"raw": base64url(RFC 2822), "threadId"?}}
--   check             GET  /gmail/v1/users/me/profile             (gmail.users.getProfile)
--
-- create_draft and the description: the converted description lists only
-- message/* media types (message/rfc822, message/cpim, ...) for the
-- drafts.create request body, because Google's Discovery document merges
-- the media-upload form (/upload/gmail/v1/..., an RFC 822 body) with the
-- JSON form (/gmail/v1/..., a Draft resource). The real non-upload path
-- takes application/json with the Draft {message: {raw}}, the message
-- base64url encoded: that is what is sent (Google's own samples do the same).
-- A mock that follows the description refuses it (Prism: 415).
--
-- Message parts arrive with their transfer encoding already undone by Gmail;
-- body.data is base64url of the part's bytes in the part's charset. Header
-- values are raw (RFC 2047 encoded words are decoded here).
-- Errors as the Calendar API: {"error": {"code", "message", "status",
-- "errors": [{"reason"}]}}, quota errors sometimes as 403.
--
-- Common subset of Lua 5.1 and 5.4 (arithmetic instead of bit operators), so
-- tests/lua can run the MIME code under busted.
local sdk = require "ferry.sdk"
local s, data, paginate = sdk.schema, sdk.data, sdk.paginate

-- Google's error object, with its 403s that mean "slow down" or "API not
-- enabled" rather than a refused credential (ferry.errors.google).
local API = sdk.errors.google{service = "Gmail"}

local USER = "/gmail/v1/users/me"
local LIST_PAGE_MAX = 100
local SUMMARY_HEADERS = {"From", "To", "Cc", "Subject", "Date"}
local DEFAULT_BODY_CHARS = 20000
local MAX_DECODE = 2 * 1024 * 1024      -- base64 characters of one part worth decoding (CPU cap)

local function str(v)
  v = data.value(v)
  if type(v) == "string" and v ~= "" then return v end
  return nil
end

---------------------------------------------------------------------------
-- base64 (RFC 4648, both alphabets)

local ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local ENC, DEC = {}, {}
for i = 1, 64 do
  local c = ALPHABET:sub(i, i)
  ENC[i - 1] = c
  DEC[c:byte()] = i - 1
end
DEC[("-"):byte()] = 62
DEC[("_"):byte()] = 63

local POW2 = {[0] = 1, 2, 4, 8, 16, 32, 64, 128}

-- Decodes standard or URL-safe base64, padded or not; other characters
-- (line breaks) are skipped.
local function b64decode(text)
  if type(text) ~= "string" then return nil end
  if #text > MAX_DECODE then text = text:sub(1, MAX_DECODE - MAX_DECODE % 4) end
  local parts, buf, nb = {}, {}, 0
  local acc, bits = 0, 0
  for i = 1, #text do
    local v = DEC[text:byte(i)]
    if v then
      acc = acc * 64 + v
      bits = bits + 6
      if bits >= 8 then
        bits = bits - 8
        local p = POW2[bits]
        local byte = math.floor(acc / p)
        acc = acc - byte * p
        nb = nb + 1
        buf[nb] = byte
        if nb >= 4000 then
          parts[#parts + 1] = string.char(unpack(buf, 1, nb))
          nb = 0
        end
      end
    end
  end
  if nb > 0 then parts[#parts + 1] = string.char(unpack(buf, 1, nb)) end
  return table.concat(parts)
end

local function b64encode(bytes, url)
  local out = {}
  local n = #bytes
  for i = 1, n, 3 do
    local a, b, c = bytes:byte(i, i + 2)
    local v = a * 65536 + (b or 0) * 256 + (c or 0)
    local c1, c2 = math.floor(v / 262144), math.floor(v / 4096) % 64
    local c3, c4 = math.floor(v / 64) % 64, v % 64
    out[#out + 1] = ENC[c1] .. ENC[c2] .. (b and ENC[c3] or "=") .. (c and ENC[c4] or "=")
  end
  local text = table.concat(out)
  if url then text = text:gsub("[+/]", {["+"] = "-", ["/"] = "_"}) end
  return text
end

---------------------------------------------------------------------------
-- Text: charsets, encoded words, HTML

local function utf8_char(cp)
  if cp < 0x80 then return string.char(cp) end
  if cp < 0x800 then return string.char(0xC0 + math.floor(cp / 64), 0x80 + cp % 64) end
  if cp < 0x10000 then
    return string.char(0xE0 + math.floor(cp / 4096), 0x80 + math.floor(cp / 64) % 64, 0x80 + cp % 64)
  end
  return string.char(0xF0 + math.floor(cp / 262144), 0x80 + math.floor(cp / 4096) % 64,
                     0x80 + math.floor(cp / 64) % 64, 0x80 + cp % 64)
end

local REPLACEMENT = "\239\191\189"   -- U+FFFD

-- `text` as valid UTF-8: every byte that does not start a well-formed
-- sequence becomes U+FFFD (JSON answers must be UTF-8).
local function valid_utf8(text)
  if not text:find("[\128-\255]") then return text end
  local out, i, n = {}, 1, #text
  while i <= n do
    local j = text:find("[\128-\255]", i)
    if not j then
      out[#out + 1] = text:sub(i)
      break
    end
    if j > i then out[#out + 1] = text:sub(i, j - 1) end
    local b1, b2, b3, b4 = text:byte(j, j + 3)
    local len = 0
    local function cont(b) return b and b >= 0x80 and b <= 0xBF end
    if b1 >= 0xC2 and b1 <= 0xDF and cont(b2) then
      len = 2
    elseif b1 >= 0xE0 and b1 <= 0xEF and cont(b2) and cont(b3) and
           not (b1 == 0xE0 and b2 < 0xA0) and not (b1 == 0xED and b2 > 0x9F) then
      len = 3
    elseif b1 >= 0xF0 and b1 <= 0xF4 and cont(b2) and cont(b3) and cont(b4) and
           not (b1 == 0xF0 and b2 < 0x90) and not (b1 == 0xF4 and b2 > 0x8F) then
      len = 4
    end
    if len > 0 then
      out[#out + 1] = text:sub(j, j + len - 1)
      i = j + len
    else
      out[#out + 1] = REPLACEMENT
      i = j + 1
    end
  end
  return table.concat(out)
end

-- windows-1252's 0x80-0x9F (the rest of it is ISO-8859-1).
local CP1252 = {
  [0x80] = 0x20AC, [0x82] = 0x201A, [0x83] = 0x0192, [0x84] = 0x201E, [0x85] = 0x2026, [0x86] = 0x2020,
  [0x87] = 0x2021, [0x88] = 0x02C6, [0x89] = 0x2030, [0x8A] = 0x0160, [0x8B] = 0x2039, [0x8C] = 0x0152,
  [0x8E] = 0x017D, [0x91] = 0x2018, [0x92] = 0x2019, [0x93] = 0x201C, [0x94] = 0x201D, [0x95] = 0x2022,
  [0x96] = 0x2013, [0x97] = 0x2014, [0x98] = 0x02DC, [0x99] = 0x2122, [0x9A] = 0x0161, [0x9B] = 0x203A,
  [0x9C] = 0x0153, [0x9E] = 0x017E, [0x9F] = 0x0178,
}
local LATIN1 = {["iso-8859-1"] = true, ["iso8859-1"] = true, ["iso_8859-1"] = true, latin1 = true,
                ["latin-1"] = true, l1 = true}
local WINDOWS = {["windows-1252"] = true, cp1252 = true, ["x-cp1252"] = true}

-- Bytes in `charset` → UTF-8. UTF-8, ASCII, ISO-8859-1 and windows-1252 are
-- converted; anything else is kept where it is valid UTF-8.
local function to_utf8(bytes, charset)
  charset = (charset or "utf-8"):lower():gsub("%*.*$", "")
  if LATIN1[charset] or WINDOWS[charset] then
    local windows = WINDOWS[charset]
    return (bytes:gsub("[\128-\255]", function(c)
      local b = c:byte()
      return utf8_char(windows and CP1252[b] or b)
    end))
  end
  return valid_utf8(bytes)
end

-- RFC 2047 encoded words ("=?UTF-8?B?...?=", "=?iso-8859-1?Q?...?=") decoded;
-- the white space between two adjacent ones is dropped, as the RFC says.
local function decode_header(value)
  if type(value) ~= "string" then return nil end
  if not value:find("=?", 1, true) then return valid_utf8(value) end
  value = value:gsub("(%?=)%s+(=%?)", "%1%2")
  value = value:gsub("=%?([^?%s]+)%?([BbQq])%?([^?%s]*)%?=", function(charset, enc, text)
    local raw
    if enc == "B" or enc == "b" then
      raw = b64decode(text)
    else
      raw = text:gsub("_", " "):gsub("=(%x%x)", function(hex) return string.char(tonumber(hex, 16)) end)
    end
    return to_utf8(raw, charset)
  end)
  return valid_utf8(value)
end

local ENTITIES = {amp = "&", lt = "<", gt = ">", quot = "\"", apos = "'", nbsp = " ", copy = "©", reg = "®",
                  mdash = "—", ndash = "–", hellip = "…", lsquo = "‘", rsquo = "’", ldquo = "“", rdquo = "”",
                  euro = "€", bull = "•", middot = "·", trade = "™", laquo = "«", raquo = "»", shy = "",
                  times = "×", deg = "°", pound = "£", yen = "¥", cent = "¢", sect = "§", para = "¶",
                  iexcl = "¡", iquest = "¿", zwnj = "", zwj = "", lrm = "", rlm = ""}
-- Latin letters with accents (&eacute; &Uuml; ...): the lowercase code
-- point of each; the capital is 0x20 below it.
local ACCENTED = {a = {grave = 0xE0, acute = 0xE1, circ = 0xE2, tilde = 0xE3, uml = 0xE4, ring = 0xE5},
                  e = {grave = 0xE8, acute = 0xE9, circ = 0xEA, uml = 0xEB},
                  i = {grave = 0xEC, acute = 0xED, circ = 0xEE, uml = 0xEF},
                  o = {grave = 0xF2, acute = 0xF3, circ = 0xF4, tilde = 0xF5, uml = 0xF6, slash = 0xF8},
                  u = {grave = 0xF9, acute = 0xFA, circ = 0xFB, uml = 0xFC},
                  y = {acute = 0xFD}, n = {tilde = 0xF1}, c = {cedil = 0xE7}}
for letter, marks in pairs(ACCENTED) do
  for mark, cp in pairs(marks) do
    ENTITIES[letter .. mark] = utf8_char(cp)
    ENTITIES[letter:upper() .. mark] = utf8_char(cp - 0x20)
  end
end
ENTITIES.szlig, ENTITIES.aelig, ENTITIES.AElig = "ß", "æ", "Æ"

local function decode_entities(text)
  return (text:gsub("&(#?[%w]+);", function(e)
    local dec = e:match("^#(%d+)$")
    local hex = e:match("^#[xX](%x+)$")
    local cp = dec and tonumber(dec) or hex and tonumber(hex, 16)
    if cp then
      if cp == 0 or cp > 0x10FFFF or (cp >= 0xD800 and cp <= 0xDFFF) then return REPLACEMENT end
      if cp == 0xA0 then return " " end
      return utf8_char(cp)
    end
    return ENTITIES[e] or ENTITIES[e:lower()] or ("&" .. e .. ";")
  end))
end

local function nocase(word)
  return (word:gsub("%a", function(c) return "[" .. c:upper() .. c:lower() .. "]" end))
end

local BLOCK = {p = "\n\n", div = "\n", br = "\n", tr = "\n", li = "\n- ", h1 = "\n\n", h2 = "\n\n", h3 = "\n\n",
               h4 = "\n\n", h5 = "\n\n", h6 = "\n\n", table = "\n", ul = "\n", ol = "\n", blockquote = "\n",
               hr = "\n----\n", td = " ", th = " "}

-- Readable text from an HTML body: no scripts, styles or tags; block
-- elements become line breaks; entities decoded; white space tidied.
local function html_to_text(html)
  html = html:gsub("<!%-%-.-%-%->", "")
  for _, tag in ipairs({"script", "style", "head", "title"}) do
    html = html:gsub("<" .. nocase(tag) .. "[%s>].-</" .. nocase(tag) .. "%s*>", "")
  end
  html = html:gsub("<%s*(/?)%s*(%a[%w]*)[^>]*>", function(slash, tag)
    local sep = BLOCK[tag:lower()]
    if not sep then return "" end
    if slash == "/" and tag:lower() == "li" then return "" end
    return sep
  end)
  html = html:gsub("<[^>]*>", "")
  html = decode_entities(html)
  html = html:gsub("\r\n?", "\n"):gsub("[ \t\f\v]+", " "):gsub(" *\n *", "\n"):gsub("\n\n\n+", "\n\n")
  return (html:gsub("^%s+", ""):gsub("%s+$", ""))
end

-- `text` cut to at most `max` bytes on a UTF-8 boundary.
local function cut(text, max)
  if #text <= max then return text, false end
  local n = max
  while n > 0 do
    local b = text:byte(n + 1)
    if not b or b < 0x80 or b >= 0xC0 then break end
    n = n - 1
  end
  return text:sub(1, n), true
end

local function format_ms(ms)
  local n = tonumber(ms)
  if not n then return nil end
  return os.date("!%Y-%m-%dT%H:%M:%SZ", math.floor(n / 1000))
end

---------------------------------------------------------------------------
-- Reading messages

-- {lowercase name → decoded value} of a part's headers (first of each name)
-- and the list of all of them.
local function headers_of(part)
  local map, list = {}, {}
  local hs = data.get(part, "headers")
  if type(hs) ~= "table" then return map, list end
  for _, h in ipairs(hs) do
    local name, value = str(data.get(h, "name")), data.get(h, "value")
    if name and type(value) == "string" then
      local decoded = decode_header(value)
      list[#list + 1] = {name = name, value = decoded}
      local key = name:lower()
      if map[key] == nil then map[key] = decoded end
    end
  end
  return map, list
end

local function charset_of(content_type)
  if type(content_type) ~= "string" then return nil end
  return content_type:match("[Cc][Hh][Aa][Rr][Ss][Ee][Tt]%s*=%s*\"?([^\";%s]+)")
end

-- Walks the MIME tree: text/plain and text/html bodies that are not
-- attachments, and the attachments. multipart/alternative contributes its
-- plain version when it has one, else its HTML one.
local function collect(part, out, depth)
  if type(part) ~= "table" or depth > 20 then return end
  local mime = (str(part.mimeType) or ""):lower()
  local hdrs = headers_of(part)
  local filename = str(part.filename)
  local disposition = (hdrs["content-disposition"] or ""):lower()
  local children = data.value(part.parts)
  if mime:match("^multipart/") and type(children) == "table" then
    if mime == "multipart/alternative" then
      local plain, html
      for _, child in ipairs(children) do
        local sub = {plain = {}, html = {}, attachments = out.attachments, incomplete = false}
        collect(child, sub, depth + 1)
        if #sub.plain > 0 and not plain then plain = sub.plain end
        if #sub.html > 0 and not html then html = sub.html end
        out.incomplete = out.incomplete or sub.incomplete
      end
      for _, t in ipairs(plain or {}) do out.plain[#out.plain + 1] = t end
      if not plain then
        for _, t in ipairs(html or {}) do out.html[#out.html + 1] = t end
      end
    else
      for _, child in ipairs(children) do collect(child, out, depth + 1) end
    end
    return
  end
  local body = data.value(part.body)
  if filename or disposition:match("^attachment") then
    out.attachments[#out.attachments + 1] = {
      filename = filename and valid_utf8(filename), mime_type = str(part.mimeType), part_id = str(part.partId),
      size = data.get(body, "size"), attachment_id = str(data.get(body, "attachmentId")),
    }
    return
  end
  if mime ~= "text/plain" and mime ~= "text/html" then return end
  local raw = str(data.get(body, "data"))
  if not raw then
    if str(data.get(body, "attachmentId")) then out.incomplete = true end
    return
  end
  local text = to_utf8(b64decode(raw), charset_of(hdrs["content-type"]))
  if mime == "text/plain" then out.plain[#out.plain + 1] = text else out.html[#out.html + 1] = text end
end

-- The message's readable body: its plain text, else its HTML as text.
local function body_of(payload)
  local out = {plain = {}, html = {}, attachments = data.array(), incomplete = false}
  collect(payload, out, 0)
  local text, format
  if #out.plain > 0 then
    text, format = table.concat(out.plain, "\n\n"), "text/plain"
    text = text:gsub("\r\n?", "\n")
  elseif #out.html > 0 then
    text, format = html_to_text(table.concat(out.html, "\n")), "text/html"
  end
  return text, format, out.attachments, out.incomplete
end

local function labels(m)
  local list = data.value(m.labelIds)
  local set = {}
  if type(list) == "table" then
    for _, l in ipairs(list) do if type(l) == "string" then set[l] = true end end
  end
  return list, set
end

local function message_url(id)
  return id and ("https://mail.google.com/mail/#all/" .. id) or nil
end

-- A message for a result list (format=metadata).
local function summary(m)
  local hdrs = headers_of(data.value(m.payload))
  local list, set = labels(m)
  local snippet = str(m.snippet)
  return {
    id = str(m.id), thread_id = str(m.threadId),
    from = hdrs.from, to = hdrs.to, cc = hdrs.cc, subject = hdrs.subject, date = hdrs.date,
    received_at = format_ms(data.value(m.internalDate)),
    snippet = snippet and decode_entities(valid_utf8(snippet)),
    labels = type(list) == "table" and data.array(list) or nil,
    unread = set.UNREAD == true, starred = set.STARRED == true,
    url = message_url(str(m.id)),
  }
end

local function message(m, max_chars, all_headers)
  local payload = data.value(m.payload)
  local out = summary(m)
  local hdrs, list = headers_of(payload)
  out.bcc, out.reply_to = hdrs.bcc, hdrs["reply-to"]
  out.message_id_header = hdrs["message-id"]
  out.in_reply_to = hdrs["in-reply-to"]
  local text, format, attachments, incomplete = body_of(payload)
  if text then
    out.body, out.body_truncated = cut(text, max_chars)
    out.body_format = format
  end
  if incomplete then out.body_incomplete = true end
  out.attachments = attachments
  if all_headers then out.headers = data.array(list) end
  return out
end

---------------------------------------------------------------------------
-- Writing drafts

-- A header value: ASCII as it is, anything else as UTF-8 "B" encoded words
-- of at most 75 characters, folded onto continuation lines.
local function encode_header(value)
  if not value:find("[\128-\255]") then return value end
  local words, i, n = {}, 1, #value
  while i <= n do
    local j = math.min(i + 44, n)             -- 45 bytes → 60 base64 characters
    while j < n do
      local b = value:byte(j + 1)
      if b < 0x80 or b >= 0xC0 then break end
      j = j - 1
    end
    words[#words + 1] = "=?UTF-8?B?" .. b64encode(value:sub(i, j)) .. "?="
    i = j + 1
  end
  return table.concat(words, "\r\n ")
end

local function wrap(text, width)
  local lines = {}
  for i = 1, #text, width do lines[#lines + 1] = text:sub(i, i + width - 1) end
  return table.concat(lines, "\r\n")
end

local function one_line(v)
  return (tostring(v):gsub("[\r\n]+", " "))
end

-- The RFC 2822 message of a draft: UTF-8 plain text, 7bit when it is short
-- ASCII lines, else base64.
local function build_message(d)
  local head = {}
  local function add(name, value)
    if value ~= nil and value ~= "" then head[#head + 1] = name .. ": " .. value end
  end
  add("To", d.to and table.concat(d.to, ", "))
  add("Cc", d.cc and table.concat(d.cc, ", "))
  add("Bcc", d.bcc and table.concat(d.bcc, ", "))
  add("Subject", d.subject and encode_header(one_line(d.subject)))
  add("In-Reply-To", d.in_reply_to and one_line(d.in_reply_to))
  add("References", d.references and one_line(d.references))
  add("MIME-Version", "1.0")
  add("Content-Type", "text/plain; charset=\"UTF-8\"")
  local body = (d.body or ""):gsub("\r\n?", "\n")
  local long_line = false
  for line in (body .. "\n"):gmatch("([^\n]*)\n") do
    if #line > 998 then long_line = true break end
  end
  -- canonical text has CRLF line ends, base64 encoded or not (RFC 2045)
  local crlf = body:gsub("\n", "\r\n")
  if body:find("[\128-\255]") or long_line then
    add("Content-Transfer-Encoding", "base64")
    body = wrap(b64encode(crlf), 76)
  else
    add("Content-Transfer-Encoding", "7bit")
    body = crlf
  end
  return table.concat(head, "\r\n") .. "\r\n\r\n" .. body
end

-- Plain addresses from a header value ("Ada <ada@x.io>, bob@y.io").
local function addresses(value)
  local out = {}
  if type(value) ~= "string" then return out end
  for item in (value .. ","):gmatch("([^,]*),") do
    local addr = item:match("<([^<>%s]+@[^<>%s]+)>") or item:match("^%s*([^<>%s\"]+@[^<>%s\"]+)%s*$")
    if addr then out[#out + 1] = addr end
  end
  return out
end

---------------------------------------------------------------------------
-- Requests

local function request(ctx, req)
  return sdk.request(ctx, req, API)
end

local function get_metadata(ctx, id, names)
  return request(ctx, {
    path = sdk.http.path(USER .. "/messages/{id}", {id = id}),
    query = {format = "metadata", metadataHeaders = names},
  })
end

local function search_messages(ctx, args)
  local estimate
  local got, err = paginate.collect{
    limit = args.limit or 10, start = args.cursor, items = "messages", next = "nextPageToken",
    fetch = function(cursor, remaining)
      local body, ferr = request(ctx, {path = USER .. "/messages", query = {
        q = args.query, labelIds = args.label_ids, includeSpamTrash = args.include_spam_trash,
        maxResults = math.min(remaining, LIST_PAGE_MAX), pageToken = cursor,
      }})
      if body and estimate == nil then estimate = data.value(body.resultSizeEstimate) end
      return body, ferr
    end,
  }
  if not got then return nil, err end
  local messages = data.array()
  for _, ref in ipairs(got.items) do
    local id = str(data.get(ref, "id"))
    if id then
      local m, merr = get_metadata(ctx, id, SUMMARY_HEADERS)
      if m then
        messages[#messages + 1] = summary(m)
      elseif not (type(merr) == "table" and merr.status == 404) then   -- deleted since the list
        return nil, merr
      end
    end
  end
  return {messages = messages, result_size_estimate = estimate, next_cursor = got.next}
end

local function get_message(ctx, args)
  local m, err = request(ctx, {
    path = sdk.http.path(USER .. "/messages/{id}", {id = args.message_id}),
    query = {format = "full"},
  })
  if not m then return nil, err end
  return message(m, args.max_body_chars or DEFAULT_BODY_CHARS, args.include_headers)
end

local function create_draft(ctx, args)
  local d = {to = args.to, cc = args.cc, bcc = args.bcc, subject = args.subject, body = args.body}
  local thread_id
  if args.reply_to_message_id then
    local orig, err = get_metadata(ctx, args.reply_to_message_id,
                                   {"Subject", "From", "Reply-To", "Message-ID", "References"})
    if not orig then return nil, err end
    local hdrs = headers_of(data.value(orig.payload))
    thread_id = str(orig.threadId)
    local msgid = hdrs["message-id"]
    if msgid then
      d.in_reply_to = msgid
      d.references = hdrs.references and (hdrs.references .. " " .. msgid) or msgid
    end
    if not d.subject then
      local subj = hdrs.subject or ""
      d.subject = subj:match("^[Rr][Ee]:") and subj or ("Re: " .. subj)
    end
    if not d.to then
      local to = addresses(hdrs["reply-to"] or hdrs.from)
      if #to > 0 then d.to = to end
    end
  end
  if not d.to and not d.cc and not d.bcc then
    return nil, sdk.errors.invalid_arguments("give the recipients in to (or reply to a message that has a sender)",
                                             "$.to")
  end
  local raw = b64encode(build_message(d), true)
  local draft, err = request(ctx, {method = "POST", path = USER .. "/drafts", json = {
    message = {raw = raw, threadId = thread_id},
  }})
  if not draft then return nil, err end
  local message_id = str(data.get(draft, "message.id"))
  return {
    draft_id = str(draft.id), message_id = message_id,
    thread_id = str(data.get(draft, "message.threadId")) or thread_id,
    to = d.to and data.array(d.to), subject = d.subject,
    url = message_id and ("https://mail.google.com/mail/#drafts?compose=" .. message_id) or nil,
  }
end

---------------------------------------------------------------------------
-- Schemas

local MESSAGE_ID = "^[A-Za-z0-9_-]+$"
local email = s.string{format = "email", maxLength = 320, pattern = "^[^[:space:],;<>\"()]+@[^[:space:],;<>\"()]+$"}
local function recipients(description)
  return s.array(email, {description, minItems = 1, maxItems = 100})
end

---------------------------------------------------------------------------

return {
  slug = "gmail",
  name = "Gmail",
  category = "email",
  description = "The user's Gmail: search messages with Gmail's search syntax, read one as plain text, and " ..
                "save drafts (for the user to review and send; nothing is sent).",
  base_url = "https://gmail.googleapis.com",
  hosts = {"gmail.googleapis.com", "accounts.google.com", "oauth2.googleapis.com"},
  auth = {
    type = "oauth2",
    authorize_url = "https://accounts.google.com/o/oauth2/v2/auth",
    token_url = "https://oauth2.googleapis.com/token",
    revoke_url = "https://oauth2.googleapis.com/revoke",
    scopes = {"https://www.googleapis.com/auth/gmail.readonly", "https://www.googleapis.com/auth/gmail.compose"},
    extra_authorize_params = {access_type = "offline", prompt = "consent"},
    instructions = "Sign in with Google and allow ferry to read your mail and manage drafts (it never sends). " ..
                   "An administrator first registers a Google OAuth client (Google Cloud console → APIs & " ..
                   "Services → Credentials, type Web application, with ferry's /oauth/callback as redirect " ..
                   "URI, and the Gmail API enabled) with `ferry oauth set-client gmail`.",
  },
  data_categories = {"communications"},
  docs_url = "https://developers.google.com/gmail/api/reference/rest",

  check = function(ctx)
    local profile, err = request(ctx, {path = USER .. "/profile"})
    if not profile then return nil, err end
    return {account_label = str(profile.emailAddress)}
  end,

  tools = {
    search_messages = {
      title = "Search Gmail",
      description = "Find messages with Gmail's search syntax (as in Gmail's search box: " ..
                    "from:ada@example.com subject:invoice after:2024/05/01 is:unread has:attachment " ..
                    "label:work), newest first. Each has sender, recipients, subject, date, snippet, labels " ..
                    "and whether it is unread; get_message reads one.",
      access = "read",
      input = s.object{
        query = s.string{"Gmail search query. Without one, the latest messages.", minLength = 1,
                         maxLength = 2000},
        label_ids = s.array(s.string{minLength = 1, maxLength = 200},
                            {"Only messages with all these label ids (INBOX, UNREAD, STARRED, IMPORTANT, SENT, " ..
                             "or a user label's id).", maxItems = 20}),
        include_spam_trash = s.boolean "Also search spam and trash.",
        limit = s.integer{"How many messages to return (default 10).", minimum = 1, maximum = 50},
        cursor = s.string{"next_cursor from an earlier call, to get the following messages.", minLength = 1},
      },
      run = search_messages,
    },

    get_message = {
      title = "Read a Gmail message",
      description = "One message by id: sender, recipients, subject, date, labels, its body as plain text " ..
                    "(the HTML version turned into text when there is no plain one) and its attachments' " ..
                    "names and sizes.",
      access = "read",
      input = s.object{
        message_id = s.string{"The message's id (from search_messages).", required = true, minLength = 1,
                              maxLength = 256, pattern = MESSAGE_ID},
        max_body_chars = s.integer{"Longest body to return, in bytes (default 20000); body_truncated says " ..
                                   "when it was cut.", minimum = 100, maximum = 500000},
        include_headers = s.boolean "Also return every header (decoded).",
      },
      run = get_message,
    },

    create_draft = {
      title = "Create a Gmail draft",
      summary = "Save a Gmail draft: {subject}",
      description = "Save a plain-text email as a draft in the user's Gmail, for them to review and send " ..
                    "(it is not sent). With reply_to_message_id it is a reply in that message's thread: " ..
                    "subject and recipient default to the original's.",
      access = "write",
      input = s.object({
        to = recipients "Recipients' email addresses.",
        cc = recipients "Copy recipients.",
        bcc = recipients "Blind copy recipients.",
        subject = s.string{"Subject line.", maxLength = 998, pattern = "^[^\r\n]*$"},
        body = s.string{"The message text (plain text).", required = true, maxLength = 200000},
        reply_to_message_id = s.string{"Reply to this message (its id from search_messages): same thread, " ..
                                       "In-Reply-To and References set.", minLength = 1, maxLength = 256,
                                       pattern = MESSAGE_ID},
      }, {anyOf = {{required = {"to"}}, {required = {"reply_to_message_id"}}}}),
      run = create_draft,
    },
  },
}
