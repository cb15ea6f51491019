-- Mailchimp Transactional (Mandrill): send transactional email.
--
-- HTTP shapes follow Mailchimp's OpenAPI description of the Transactional
-- API (mailchimp/mailchimp-client-lib-codegen, spec/transactional.openapi.json):
--   ping           POST /users/ping       (UsersPingRequest; answers "PONG!")
--   send_message   POST /messages/send    (MessagesSendRequest: {message, ...})
--   check          POST /users/ping
-- Every operation is a POST of a JSON body that carries the API key as its
-- "key" field: the core adds it (auth.body), the script never sees it.
-- Errors come as {"status": "error", "code", "name", "message"}; an
-- Invalid_Key error means the key is bad whatever the HTTP status.
local sdk = require "ferry.sdk"
local s, data, errors = sdk.schema, sdk.data, sdk.errors

local API = {
  service = "Mailchimp Transactional",
  message = {"message"},
  code = {"name"},
  body_error = errors.when("status", "error"),
  classify = function(_, body)
    if data.get(body, "name") == "Invalid_Key" then return "reconnect_required" end
  end,
}

local function post(ctx, path, fields)
  return sdk.request(ctx, {method = "POST", path = path, json = fields or {}}, API)
end

---------------------------------------------------------------------------
-- Requests

local function ping(ctx)
  local reply, err = post(ctx, "/users/ping")
  if not reply then return nil, err end
  return {ok = reply == "PONG!", reply = reply}
end

-- Mandrill's message from the tool's arguments.
local function message(args)
  local headers
  if args.reply_to then headers = {["Reply-To"] = args.reply_to} end
  return {
    to = data.map(args.to, function(r) return {email = r.email, name = r.name, type = r.type or "to"} end),
    subject = args.subject,
    text = args.text,
    html = args.html,
    from_email = args.from_email,
    from_name = args.from_name,
    headers = headers,
    tags = args.tags,
    important = args.important,
    track_opens = args.track_opens,
    track_clicks = args.track_clicks,
    metadata = args.metadata,
  }
end

local function send_message(ctx, args)
  local results, err = post(ctx, "/messages/send", {message = message(args)})
  if not results then return nil, err end
  local counts, recipients = {}, data.array()
  for _, r in ipairs(type(results) == "table" and results or {}) do
    local status = data.value(r.status) or "unknown"
    counts[status] = (counts[status] or 0) + 1
    recipients[#recipients + 1] = {
      email = data.value(r.email),
      status = status,
      id = data.value(r._id),
      reject_reason = data.value(r.reject_reason),
      queued_reason = data.value(r.queued_reason),
    }
  end
  return {counts = counts, recipients = recipients}
end

---------------------------------------------------------------------------

return {
  slug = "mailchimp_transactional",
  name = "Mailchimp Transactional (Mandrill)",
  category = "email",
  description = "Send transactional email through Mailchimp Transactional (formerly Mandrill).",
  base_url = "https://mandrillapp.com/api/1.4",
  hosts = {"mandrillapp.com"},
  auth = {
    type = "api_key", field = "api_key", body = "key",
    instructions = "In Mailchimp Transactional (mandrillapp.com), open Settings → SMTP & API Info, " ..
                   "create an API key and paste it here.",
  },
  data_categories = {"communications"},
  docs_url = "https://mailchimp.com/developer/transactional/api/",

  check = function(ctx)
    local reply, err = post(ctx, "/users/ping")
    if not reply then return nil, err end
    return {}
  end,

  tools = {
    ping = {
      title = "Check the Mailchimp Transactional connection",
      description = "Checks that the API key works (Mailchimp Transactional answers PONG!).",
      access = "read",
      run = ping,
    },

    send_message = {
      title = "Send an email with Mailchimp Transactional",
      description = "Send one email to one or more recipients (to, cc or bcc). Give text, html or " ..
                    "both. Returns each recipient's status (sent, queued, scheduled, rejected, invalid) " ..
                    "with the message id and the reason for rejections.",
      access = "write",
      input = s.object({
        to = s.array(s.object{
          email = s.string{"Recipient address.", required = true, format = "email"},
          name = s.string{"Display name.", maxLength = 200},
          type = s.enum{"to", "cc", "bcc", description = "Header to list the recipient in (default to)."},
        }, {"Recipients.", required = true, minItems = 1, maxItems = 100}),
        subject = s.string{"Subject line.", required = true, minLength = 1, maxLength = 998},
        text = s.string{"Plain-text body.", minLength = 1},
        html = s.string{"HTML body.", minLength = 1},
        from_email = s.string{"Sender address (on a domain verified in the account).", required = true,
                              format = "email"},
        from_name = s.string{"Sender display name.", maxLength = 200},
        reply_to = s.string{"Reply-To address.", format = "email"},
        tags = s.array(s.string{maxLength = 50, pattern = "^[^_]"}, {
          "Tags for statistics (at most 50 characters, not starting with _).", maxItems = 10,
        }),
        important = s.boolean "Deliver ahead of non-important messages.",
        track_opens = s.boolean "Track opens.",
        track_clicks = s.boolean "Track clicks.",
        metadata = s.map(s.string{maxLength = 200}, "Key-value metadata stored with the message."),
      }, {anyOf = {{required = {"text"}}, {required = {"html"}}}}),
      run = send_message,
    },
  },
}
