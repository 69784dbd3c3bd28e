-- name: Azure resource groups
-- provider: azure
-- schedule: 30 * * * *
-- target_table: azure_resource_groups
-- demo_env is set on the resource group the demo stack created (tag stackql-inventory-demo).
SELECT name, location, JSON_EXTRACT(properties, '$.provisioningState') AS provisioning_state,
       JSON_EXTRACT(tags, '$.stackql-inventory-demo') AS demo_env
FROM azure.resources.resource_groups
WHERE subscriptionId = '00000000-0000-0000-0000-000000000000';
