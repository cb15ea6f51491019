-- Outlook mail (Microsoft 365 and outlook.com) through Microsoft Graph, read-only.
--
-- tests/specs has no description of Graph's mail endpoints (Calendar.yml
-- covers calendars only), so the shapes follow Microsoft's Graph v1.0
-- reference (learn.microsoft.com/graph/api/user-list-messages,
-- message-get, message-list-attachments, user-get, and "Use query
-- parameters" for $search and $filter):
--   list_messages   GET /me/messages  or  /me/mailFolders/{folder}/messages
--                   $select, $top; either $search="<KQL>" or $filter + $orderby=receivedDateTime desc
--   get_message     GET /me/messages/{id}?$select=...   Prefer: outlook.body-content-type="text"
--                   GET /me/messages/{id}/attachments?$select=id,name,contentType,size,isInline
--   check           GET /me?$select=displayName,mail,userPrincipalName   (needs User.Read)
-- Pages: @odata.nextLink, followed as a path under the base URL and handed
-- to agents as next_cursor.
-- Graph's rules the tool enforces before any request: $search cannot be
-- combined with $filter or $orderby on messages; with $filter and $orderby
-- together, the ordered property must come first in the filter
-- (InefficientFilter otherwise), so every filter starts with receivedDateTime.
--
-- Common subset of Lua 5.1 and 5.4.
local sdk = require "ferry.sdk"
local s, data, paginate = sdk.schema, sdk.data, sdk.paginate

local GRAPH = "https://graph.microsoft.com/v1.0"
local API = {service = "Microsoft Graph", message = {"error.message"}, code = {"error.code"}}

local PAGE_MAX = 50
local DEFAULT_BODY_CHARS = 20000
local EPOCH = "1900-01-01T00:00:00Z"   -- receivedDateTime ge this: "any time", to lead the filter

local LIST_FIELDS = {
  "id", "subject", "from", "toRecipients", "ccRecipients", "receivedDateTime", "sentDateTime", "bodyPreview",
  "isRead", "isDraft", "hasAttachments", "importance", "webLink", "conversationId", "flag", "categories",
  "parentFolderId",
}
local FULL_FIELDS = table.concat(LIST_FIELDS, ",") ..
                    ",bccRecipients,replyTo,sender,internetMessageId,body,inferenceClassification"

local function str(v)
  v = data.value(v)
  if type(v) == "string" and v ~= "" then return v end
  return nil
end

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

-- "2024-05-02T10:00:00.1234567Z" → "2024-05-02T10:00:00Z".
local function stamp(v)
  v = str(v)
  if not v then return nil end
  local at = v:match("^(%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d)%.?%d*Z$")
  return at and (at .. "Z") or v
end

---------------------------------------------------------------------------
-- Shaping results

local function address(holder)
  local ea = data.get(holder, "emailAddress")
  if type(ea) ~= "table" then return nil end
  local out = {name = str(ea.name), email = str(ea.address)}
  if not out.name and not out.email then return nil end
  return out
end

local function addresses(list)
  if type(list) ~= "table" then return nil end
  return data.map(list, address)
end

local function summary(m)
  local cats = data.value(m.categories)
  return {
    id = str(m.id), conversation_id = str(m.conversationId), subject = str(m.subject),
    from = address(data.value(m.from)), to = addresses(data.value(m.toRecipients)),
    cc = addresses(data.value(m.ccRecipients)),
    received_at = stamp(m.receivedDateTime), sent_at = stamp(m.sentDateTime),
    preview = str(m.bodyPreview), unread = data.value(m.isRead) == false, draft = data.value(m.isDraft) == true,
    has_attachments = data.value(m.hasAttachments) == true, importance = str(m.importance),
    flagged = data.get(m, "flag.flagStatus") == "flagged",
    categories = type(cats) == "table" and #cats > 0 and data.map(cats, str) or nil,
    folder_id = str(m.parentFolderId), url = str(m.webLink),
  }
end

local function attachment(a)
  return {id = str(a.id), name = str(a.name), content_type = str(a.contentType), size = data.value(a.size),
          inline = data.value(a.isInline) == true}
end

---------------------------------------------------------------------------
-- Requests

local function request(ctx, req)
  return sdk.request(ctx, req, API)
end

-- @odata.nextLink (an absolute Graph URL) as a path under the base URL, or nil.
local function link_path(body)
  return paginate.relative(GRAPH, data.get(body, {"@odata.nextLink"}))
end

-- A next_cursor handed back: a path from an earlier answer of list_messages.
local function cursor_path(cursor)
  if cursor == nil then return nil end
  local rest = cursor:match("^/me(/.*)$") or cursor:match("^/users/[^/?]+(/.*)$")
  if not rest or cursor:find("[%s#]") then return false end
  if rest:match("^/messages%?") or rest:match("^/mailFolders/[^/?]+/messages%?") then return cursor end
  return false
end

-- OData string literal: single quotes doubled.
local function odata_string(v)
  return "'" .. v:gsub("'", "''") .. "'"
end

-- KQL for $search, in the double quotes Graph wants around it.
local function search_value(q)
  return "\"" .. q:gsub("\\", "\\\\"):gsub("\"", "\\\"") .. "\""
end

local FILTER_ARGS = {"from", "unread_only", "received_after", "received_before", "has_attachments", "filter"}

-- The $filter of the filter arguments, led by receivedDateTime (for $orderby).
local function build_filter(args)
  local terms = {"receivedDateTime ge " .. (args.received_after or EPOCH)}
  if args.received_before then terms[#terms + 1] = "receivedDateTime lt " .. args.received_before end
  if args.from then terms[#terms + 1] = "from/emailAddress/address eq " .. odata_string(args.from) end
  if args.unread_only then terms[#terms + 1] = "isRead eq false" end
  if args.has_attachments ~= nil then terms[#terms + 1] = "hasAttachments eq " .. tostring(args.has_attachments) end
  if args.filter then terms[#terms + 1] = "(" .. args.filter .. ")" end
  return table.concat(terms, " and ")
end

local function list_messages(ctx, args)
  if args.query then
    for _, name in ipairs(FILTER_ARGS) do
      if args[name] ~= nil then
        return nil, sdk.errors.invalid_arguments(
          "Graph cannot combine a search (query) with filters: put the condition in the query as KQL " ..
          "(from:ada@example.com received>=2024-05-01 hasattachments:true), or drop the query", "$." .. name)
      end
    end
  end
  local start = cursor_path(args.cursor)
  if start == false then
    return nil, sdk.errors.invalid_arguments("cursor is not a next_cursor of list_messages", "$.cursor")
  end
  local path = "/me/messages"
  if args.folder then path = sdk.http.path("/me/mailFolders/{folder}/messages", {folder = args.folder}) end
  local got, err = paginate.collect{
    limit = args.limit or 10, start = start, items = "value", next = link_path,
    fetch = function(cursor, remaining)
      if cursor then return request(ctx, {path = cursor}) end
      local query = {["$select"] = table.concat(LIST_FIELDS, ","), ["$top"] = math.min(remaining, PAGE_MAX)}
      if args.query then
        query["$search"] = search_value(args.query)
      else
        query["$filter"] = build_filter(args)
        query["$orderby"] = "receivedDateTime desc"
      end
      return request(ctx, {path = path, query = query})
    end,
  }
  if not got then return nil, err end
  return {messages = data.map(got.items, summary), next_cursor = got.next}
end

local function get_message(ctx, args)
  local path = sdk.http.path("/me/messages/{id}", {id = args.message_id})
  local m, err = request(ctx, {path = path, query = {["$select"] = FULL_FIELDS},
                               headers = {Prefer = 'outlook.body-content-type="text"'}})
  if not m then return nil, err end
  local out = summary(m)
  out.bcc = addresses(data.value(m.bccRecipients))
  out.reply_to = addresses(data.value(m.replyTo))
  out.sender = address(data.value(m.sender))
  out.internet_message_id = str(m.internetMessageId)
  out.focused = str(m.inferenceClassification)
  local body = str(data.get(m, "body.content"))
  if body then
    body = body:gsub("\r\n?", "\n")
    out.body, out.body_truncated = cut(body, args.max_body_chars or DEFAULT_BODY_CHARS)
    out.body_format = str(data.get(m, "body.contentType"))
  end
  if out.has_attachments and args.include_attachments ~= false then
    local list, aerr = request(ctx, {path = path .. "/attachments",
                                     query = {["$select"] = "id,name,contentType,size,isInline"}})
    if not list then return nil, aerr end
    out.attachments = data.map(data.value(list.value), attachment)
  end
  return out
end

---------------------------------------------------------------------------
-- Schemas

local date_time = function(description) return s.string{description, format = "date-time"} end

---------------------------------------------------------------------------

return {
  slug = "outlook_mail",
  name = "Outlook Mail",
  category = "email",
  description = "The user's Outlook (Microsoft 365 / outlook.com) mail through Microsoft Graph: list and " ..
                "search messages, read one as plain text with its attachments' names.",
  base_url = GRAPH,
  hosts = {"graph.microsoft.com", "login.microsoftonline.com"},
  auth = {
    type = "oauth2",
    authorize_url = "https://login.microsoftonline.com/common/oauth2/v2.0/authorize",
    token_url = "https://login.microsoftonline.com/common/oauth2/v2.0/token",
    -- User.Read for the account's address (the check); offline_access for a refresh token
    scopes = {"Mail.Read", "User.Read", "offline_access"},
    instructions = "Sign in with Microsoft and allow ferry to read your mail. An administrator first registers " ..
                   "an application in Microsoft Entra ID (App registrations → New registration, Web redirect URI " ..
                   "ferry's /oauth/callback, delegated Graph permissions Mail.Read and User.Read, and a client " ..
                   "secret) and saves it with `ferry oauth set-client outlook_mail`.",
  },
  data_categories = {"communications"},
  docs_url = "https://learn.microsoft.com/graph/api/resources/mail-api-overview",

  check = function(ctx)
    local me, err = request(ctx, {path = "/me", query = {["$select"] = "displayName,mail,userPrincipalName"}})
    if not me then return nil, err end
    return {account_label = str(me.mail) or str(me.userPrincipalName) or str(me.displayName)}
  end,

  tools = {
    list_messages = {
      title = "List or search Outlook mail",
      description = "Messages, newest first, with sender, recipients, subject, dates, a preview and flags. " ..
                    "Either search with query (KQL as in Outlook's search box: from:ada subject:invoice " ..
                    "hasattachments:true received>=2024-05-01, or plain words) or filter with the other " ..
                    "arguments, not both. get_message reads one.",
      access = "read",
      input = s.object{
        query = s.string{"Search words or KQL (searches sender, subject and body by default).", minLength = 1,
                         maxLength = 1000},
        folder = s.string{"Only this folder: inbox, sentitems, drafts, deleteditems, archive, junkemail, or a " ..
                          "folder id. Default: every folder.", minLength = 1, maxLength = 512},
        from = s.string{"Only messages from this address.", format = "email", maxLength = 320},
        unread_only = s.boolean "Only unread messages.",
        has_attachments = s.boolean "Only messages with (true) or without (false) attachments.",
        received_after = date_time "Only messages received at or after this time (RFC 3339).",
        received_before = date_time "Only messages received before this time (RFC 3339).",
        filter = s.string{"An OData $filter over message properties, added with 'and', e.g. " ..
                          "importance eq 'high'.", minLength = 1, maxLength = 1000},
        limit = s.integer{"How many messages to return (default 10).", minimum = 1, maximum = 200},
        cursor = s.string{"next_cursor from an earlier call, to get the following messages.", minLength = 1,
                          maxLength = 4096},
      },
      run = list_messages,
    },

    get_message = {
      title = "Read an Outlook message",
      description = "One message by id: sender, recipients, subject, dates, its body as plain text and its " ..
                    "attachments' names, types and sizes.",
      access = "read",
      input = s.object{
        message_id = s.string{"The message's id (from list_messages).", required = true, minLength = 1,
                              maxLength = 512},
        max_body_chars = s.integer{"Longest body to return, in bytes (default 20000); body_truncated says " ..
                                   "when it was cut.", minimum = 100, maximum = 500000},
        include_attachments = s.boolean "List the attachments (default true; one more request when there are any).",
      },
      run = get_message,
    },
  },
}
