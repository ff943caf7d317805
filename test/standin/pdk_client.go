package standin

import (
	pb "github.com/Kong/go-pdk/server/kong_plugin_protocol"
	"google.golang.org/protobuf/proto"
)

// authAndLater is AUTH_AND_LATER of kong/pdk/client.lua.
const authAndLater = phAccess | phHeaderFilter | phResponse | phBodyFilter | phLog

// kong/pdk/client.lua
var clientMethods = map[string]pdkHandler{
	"kong.client.get_ip": guarded((*call).clientAPI, func(c *call) (proto.Message, error) {
		return pbString(c.r.remoteIP), nil
	}),
	"kong.client.get_forwarded_ip": guarded((*call).clientAPI, func(c *call) (proto.Message, error) {
		return pbString(c.r.remoteIP), nil
	}),
	"kong.client.get_port": guarded((*call).clientAPI, func(c *call) (proto.Message, error) {
		return pbInt(c.r.remotePort), nil
	}),
	"kong.client.get_forwarded_port": guarded((*call).clientAPI, func(c *call) (proto.Message, error) {
		return pbInt(c.r.remotePort), nil
	}),
	"kong.client.get_credential": inPhases(authAndLater, func(c *call) (proto.Message, error) {
		m, _ := c.r.ctx["authenticated_credential"].(map[string]any)
		return credentialPB(m), nil
	}),
	"kong.client.load_consumer": inPhases(authAndLater, func(c *call) (proto.Message, error) {
		spec, err := decode(c, &pb.ConsumerSpec{})
		if err != nil {
			return nil, err
		}
		if spec.Id == "" {
			return nil, luaError("consumer_id must be a string")
		}
		isUUID := uuidRe.MatchString(spec.Id)
		if !isUUID && !spec.ByUsername {
			return nil, luaError("cannot load a consumer with an id that is not a uuid")
		}
		for _, cons := range c.r.node.deck.Consumers {
			if isUUID && cons.ID == spec.Id {
				return consumerPB(copyEntity(cons.entity)), nil
			}
		}
		if spec.ByUsername {
			for _, cons := range c.r.node.deck.Consumers {
				if cons.Username == spec.Id {
					return consumerPB(copyEntity(cons.entity)), nil
				}
			}
		}
		return nil, nil
	}),
	"kong.client.get_consumer": inPhases(authAndLater, func(c *call) (proto.Message, error) {
		m, _ := c.r.ctx["authenticated_consumer"].(map[string]any)
		return consumerPB(m), nil
	}),
	"kong.client.authenticate": inPhases(phAccess, func(c *call) (proto.Message, error) {
		a, err := decode(c, &pb.AuthenticateArgs{})
		if err != nil {
			return nil, err
		}
		if a.Consumer == nil && a.Credential == nil {
			return nil, luaError("either credential or consumer must be provided")
		}
		setOrDelete(c.r.ctx, "authenticated_consumer", pbConsumerTable(a.Consumer))
		setOrDelete(c.r.ctx, "authenticated_credential", pbCredentialTable(a.Credential))
		return nil, nil
	}),
	"kong.client.get_protocol": inPhases(authAndLater, func(c *call) (proto.Message, error) {
		route, _ := c.r.ctx["route"].(map[string]any)
		if route == nil {
			return nil, nil
		}
		protos := entityStrings(route, "protocols")
		if len(protos) == 1 {
			return pbString(protos[0]), nil
		}
		if err := c.r.requestAPI(); err != nil { // is_trusted(get_ip())
			return nil, err
		}
		return pbString("http"), nil
	}),
}

func pbConsumerTable(c *pb.Consumer) any {
	if c == nil {
		return nil
	}
	m := map[string]any{}
	if c.Id != "" {
		m["id"] = c.Id
	}
	if c.CreatedAt != 0 {
		m["created_at"] = float64(c.CreatedAt)
	}
	if c.Username != "" {
		m["username"] = c.Username
	}
	if c.CustomId != "" {
		m["custom_id"] = c.CustomId
	}
	if len(c.Tags) > 0 {
		m["tags"] = anyList(c.Tags)
	}
	return m
}

func pbCredentialTable(c *pb.AuthenticatedCredential) any {
	if c == nil {
		return nil
	}
	m := map[string]any{}
	if c.Id != "" {
		m["id"] = c.Id
	}
	if c.ConsumerId != "" {
		m["consumer_id"] = c.ConsumerId
	}
	return m
}
