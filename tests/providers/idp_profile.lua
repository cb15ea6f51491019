-- idp_profile: an OAuth 2 provider whose API is the test identity
-- provider's own userinfo endpoint (/me), which accepts only live access
-- tokens it issued. The OAuth tests point it at the IdP with
-- --base-url idp_profile=http://127.0.0.1:PORT and `ferry oauth set-client`.
local function me(ctx)
  local resp, err = ctx.http.request{path = "/me"}
  if not resp then return nil, err end
  if resp.status == 401 then
    return nil, {code = "reconnect_required", message = "the identity provider refused the access token"}
  end
  if not resp.ok then
    return nil, {code = "upstream_error", message = "the identity provider answered HTTP " .. resp.status}
  end
  return resp.json()
end

return {
  slug = "idp_profile",
  name = "IdP profile",
  category = "developer",
  description = "Test provider: the test identity provider's userinfo, reached with an OAuth token.",
  base_url = "http://127.0.0.1:9",
  hosts = {"127.0.0.1"},
  auth = {type = "oauth2", authorize_url = "http://127.0.0.1:9/auth", token_url = "http://127.0.0.1:9/token",
          revoke_url = "http://127.0.0.1:9/token/revocation", scopes = {"openid", "email"}},
  data_categories = {"crm"},

  check = function(ctx)
    local profile, err = me(ctx)
    if not profile then return nil, err end
    return {account_label = profile.email}
  end,

  tools = {
    whoami = {
      description = "The signed-in account, as the identity provider sees the token.",
      access = "read",
      input = {type = "object", properties = {}, additionalProperties = false},
      run = function(ctx) return me(ctx) end,
    },
  },
}
