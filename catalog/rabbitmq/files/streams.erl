%% The Helm test: escript with ERL_LIBS at the broker's plugins (amqp_client, rabbit_common and
%% rabbitmq_stream_common's frame codec, rabbit_stream_core). URI and STREAM_URI are the binding's.
-include_lib("amqp_client/include/amqp_client.hrl").

main(_) ->
    {ok, Params} = amqp_uri:parse(os:getenv("URI")),
    Stream = <<"convoy-test">>,
    Body = iolist_to_binary(["convoy test ", integer_to_list(os:system_time())]),
    {ok, Conn} = amqp_connection:start(Params),
    {ok, Ch} = amqp_connection:open_channel(Conn),
    #'queue.declare_ok'{} = amqp_channel:call(Ch, #'queue.declare'{queue = Stream, durable = true,
        arguments = [{<<"x-queue-type">>, longstr, <<"stream">>}]}),
    #'confirm.select_ok'{} = amqp_channel:call(Ch, #'confirm.select'{}),
    ok = amqp_channel:call(Ch, #'basic.publish'{routing_key = Stream}, #amqp_msg{payload = Body}),
    true = amqp_channel:wait_for_confirms(Ch, 30),
    io:format("amqp: published to the stream ~s, confirmed~n", [Stream]),
    #'basic.qos_ok'{} = amqp_channel:call(Ch, #'basic.qos'{prefetch_count = 100}),
    #'basic.consume_ok'{consumer_tag = Tag} = amqp_channel:subscribe(Ch, #'basic.consume'{queue = Stream,
        arguments = [{<<"x-stream-offset">>, longstr, <<"first">>}]}, self()),
    amqp_consume(Ch, Body),
    #'basic.cancel_ok'{} = amqp_channel:call(Ch, #'basic.cancel'{consumer_tag = Tag}),
    io:format("amqp: read it back from the start of the stream~n"),
    stream_protocol(os:getenv("STREAM_URI"), Stream, Body),
    io:format("stream protocol: subscribed and found it~n"),
    #'queue.delete_ok'{} = amqp_channel:call(Ch, #'queue.delete'{queue = Stream}),
    ok = amqp_connection:close(Conn),
    Guest = Params#amqp_params_network{username = <<"guest">>, password = <<"guest">>},
    {error, _} = amqp_connection:start(Guest),
    io:format("guest: refused~nok~n").

amqp_consume(Ch, Body) ->
    receive
        {#'basic.deliver'{delivery_tag = Tag}, #amqp_msg{payload = P}} ->
            amqp_channel:cast(Ch, #'basic.ack'{delivery_tag = Tag}),
            P =:= Body orelse amqp_consume(Ch, Body);
        #'basic.consume_ok'{} -> amqp_consume(Ch, Body)
    after 30000 -> error(no_message_over_amqp)
    end.

%% A client of the stream protocol: authenticate, open the vhost, subscribe from the first offset
%% and look for Body in the chunks delivered. A response code of 1 is the protocol's OK.
stream_protocol(Uri, Stream, Body) ->
    #{host := Host, port := Port, userinfo := UserInfo} = uri_string:parse(Uri),
    [User, Pass] = [list_to_binary(uri_string:percent_decode(S)) || S <- string:split(UserInfo, ":")],
    {ok, S} = gen_tcp:connect(Host, Port, [binary, {active, false}], 10000),
    C0 = rabbit_stream_core:init(undefined),
    send(S, {request, 1, {peer_properties, #{<<"product">> => <<"convoy-test">>}}}),
    {{response, 1, {peer_properties, 1, _}}, C1} = recv(S, C0),
    send(S, {request, 2, sasl_handshake}),
    {{response, 2, {sasl_handshake, 1, _}}, C2} = recv(S, C1),
    send(S, {request, 3, {sasl_authenticate, <<"PLAIN">>, <<0, User/binary, 0, Pass/binary>>}}),
    {{response, 3, {sasl_authenticate, 1}}, C3} = recv(S, C2),
    {{tune, FrameMax, _}, C4} = recv(S, C3),
    send(S, {response, 0, {tune, FrameMax, 0}}),
    send(S, {request, 4, {open, <<"/">>}}),
    {{response, 4, {open, 1, _}}, C5} = recv(S, C4),
    send(S, {request, 5, {subscribe, 1, Stream, first, 10, #{}}}),
    {{response, 5, {subscribe, 1}}, C6} = recv(S, C5),
    deliver(S, C6, Body).

deliver(S, C0, Body) ->
    case recv(S, C0) of
        {{deliver, 1, Chunk}, C} ->
            binary:match(Chunk, Body) =/= nomatch orelse deliver(S, C, Body);
        {_, C} -> deliver(S, C, Body)
    end.

send(S, Cmd) -> ok = gen_tcp:send(S, rabbit_stream_core:frame(Cmd)).

recv(S, C0) ->
    case rabbit_stream_core:next_command(C0) of
        empty ->
            {ok, Data} = gen_tcp:recv(S, 0, 30000),
            recv(S, rabbit_stream_core:incoming_data(Data, C0));
        Next -> Next
    end.
