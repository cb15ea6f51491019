-- Loops forever while loading: the CPU cap must stop it and ferry must
-- skip the provider instead of hanging.
while true do end
