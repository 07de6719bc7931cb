"""The evaluator and the function table: documented examples, real corpus expressions with
their values, error codes and locations, laziness, lambdas, user functions, and laws."""

from __future__ import annotations

from typing import Any

import pytest
from fake_context import FakeContext
from hypothesis import given
from hypothesis import strategies as st

from lbsim.arm.context import Placeholder, RuntimeObject, UserFunction
from lbsim.arm.evaluate import evaluate_expression, evaluate_json, evaluate_string
from lbsim.arm.expressions import StringLiteral, format_expression, parse_expression
from lbsim.arm.functions import FUNCTIONS
from lbsim.errors import ExpressionError
from lbsim.model.deployment import DeploymentContext
from lbsim.pointer import Pointer

SUB = "00000000-0000-0000-0000-000000000000"
RG_ID = f"/subscriptions/{SUB}/resourceGroups/rg1"
AT = Pointer.parse("/resources/3/properties/name")
ARTIFACTS = "https://raw.githubusercontent.com/Azure/azure-quickstart-templates/master/201-x/"
DOGS = [
    {"name": "Evie", "age": 5},
    {"name": "Casper", "age": 3},
    {"name": "Indy", "age": 2},
    {"name": "Kira", "age": 8},
]


def make_context(**changes: Any) -> FakeContext:
    ctx = FakeContext(
        parameters={
            "vmssName": "MyScaleSet",
            "lbName": "lb1",
            "nicNamePrefix": "nic",
            "numberToFormat": 8175133,
            "licenseType": "PAYG",
            "vmSpot": True,
            "vmName": "rdcb01",
            "deployHA": True,
            "_artifactsLocation": ARTIFACTS,
            "_artifactsLocationSasToken": "?sv=2020&sig=x",
            "storageAccountName": "store1",
            "settings": {"Tier": {"size": "small", "list": [10, 20, 30]}},
        },
        variables={
            "accountid": "/sub/x/storageAccounts/store1",
            "uniqueStringArray": ["a", "b", "c"],
            "scriptFolder": "scripts",
            "fileToBeDownloaded": "eap.zip",
            "virtualNetworkName": "vnet",
            "subnetName": "default",
            "dogs": DOGS,
        },
        copy_indexes={None: 2, "rules": 1},
        references={"store1": {"primaryEndpoints": {"blob": "https://store1.blob/"}}},
        keys={"/sub/x/storageAccounts/store1": {"keys": [{"value": "KEY1"}]}},
        context=DeploymentContext(resource_group="rg1", location="westus2"),
    )
    for name, value in changes.items():
        setattr(ctx, name, value)
    return ctx


def ev(text: str, ctx: FakeContext | None = None) -> Any:
    return evaluate_string(text, ctx or make_context(), AT)


def fails(text: str, ctx: FakeContext | None = None) -> ExpressionError:
    with pytest.raises(ExpressionError) as caught:
        ev(text, ctx)
    assert caught.value.code == "InvalidTemplate"
    assert caught.value.at == AT
    return caught.value


# Real expressions from the real-world ARM corpus, with the values they must give.
CORPUS_CASES = [
    (  # bicep-vmss-windows-autoscale-symbolic: variables.namingInfix
        "[toLower(substring(format('{0}{1}', parameters('vmssName'), "
        "uniqueString(resourceGroup().id)), 0, 9))]",
        "myscalese",
    ),
    (  # qs-vmss-linux-customimage-autoscale: variables.vmssuniqueName
        "[toLower(take(concat(take(parameters('vmssName'),6), "
        "uniqueString(resourceGroup().id)), 9))]",
        "myscalsod",
    ),
    (  # qs-vmss-automation-dsc: variables.automationAccountName
        "[concat('DSC-',take(guid(resourceGroup().id),5))]",
        "DSC-16951",
    ),
    (  # qs-2-vms-lb-lbrules: NIC inboundNatRules id
        "[resourceId('Microsoft.Network/loadBalancers/inboundNatRules', parameters('lbName'), "
        "concat('RDP-VM', copyindex()))]",
        f"{RG_ID}/providers/Microsoft.Network/loadBalancers/lb1/inboundNatRules/RDP-VM2",
    ),
    (  # qs-2-vms-lb-lbrules: dependsOn with a trailing slash in the type
        "[resourceId('Microsoft.Network/networkInterfaces/', concat(parameters('nicNamePrefix'), "
        "copyindex()))]",
        f"{RG_ID}/providers/Microsoft.Network/networkInterfaces/nic2",
    ),
    ("[copyIndex(5000)]", 5002),  # qs-2-vms-lb-natrules: frontendPort
    ("[concat('10.0.0.1', copyindex())]", "10.0.0.12"),  # qs-elasticsearch-vmss
    (  # qs-vmss-datascience: variables.vmSkuName
        "[if(and(equals(environment().name, 'AzureCloud'), equals(parameters('licenseType'), "
        "'PAYG')), '', 'byol')]",
        "",
    ),
    ("[if(equals(parameters('vmSpot'),bool('true')),'-1',json('null'))]", "-1"),  # rds-full-ha
    ("[and(contains(parameters('vmName'),'cb'),parameters('deployHA'))]", True),
    (  # qs-vmss-linux-customimage-autoscale: commandToExecute
        "[format('sudo bash {0} \"{1}\" {2} {3}', 'updateapp.sh', 'package.tar.gz', "
        "'/nodeserver', 'mainsite.service')]",
        'sudo bash updateapp.sh "package.tar.gz" /nodeserver mainsite.service',
    ),
    (  # qs-jboss-eap-clustered-vmss-rhel: variables.scriptArgs
        "[concat('-a ', uri(parameters('_artifactsLocation'), '.'), ' -t \"', "
        "parameters('_artifactsLocationSasToken'), '\" -p ', variables('scriptFolder'), ' -f ', "
        "variables('fileToBeDownloaded'))]",
        f'-a {ARTIFACTS} -t "?sv=2020&sig=x" -p scripts -f eap.zip',
    ),
    (  # qs-couchbase-vmss: fileUris
        "[uri(parameters('_artifactsLocation'), concat('scripts/server.sh', "
        "parameters('_artifactsLocationSasToken')))]",
        f"{ARTIFACTS}scripts/server.sh?sv=2020&sig=x",
    ),
    ("[listkeys(variables('accountid'), '2019-06-01').keys[0].value]", "KEY1"),  # drupal8
    (  # qs-2-vms-lb-lbrules: bootDiagnostics.storageUri
        "[reference(parameters('storageAccountName'), '2019-06-01').primaryEndpoints.blob]",
        "https://store1.blob/",
    ),
    ("[length(variables('uniqueStringArray'))]", 3),  # qs-vmss-windows-nat
    ("[concat('http://', environment().suffixes.storage)]", "http://core.windows.net"),
    (  # bicep symbolic: subnet id
        "[format('{0}/subnets/{1}', resourceId('Microsoft.Network/virtualNetworks', "
        "variables('virtualNetworkName')), variables('subnetName'))]",
        f"{RG_ID}/providers/Microsoft.Network/virtualNetworks/vnet/subnets/default",
    ),
    (  # myriad-vmss-nsg-nic: an id built by concat equals the resourceId route
        "[equals(concat('/subscriptions/', subscription().subscriptionId, '/resourceGroups/', "
        "resourceGroup().name, '/providers/Microsoft.Network/loadBalancers/', "
        "parameters('lbName')), resourceId('Microsoft.Network/loadBalancers', "
        "parameters('lbName')))]",
        True,
    ),
]


@pytest.mark.parametrize(("text", "expected"), CORPUS_CASES)
def test_corpus_expressions_give_their_values(text: str, expected: Any) -> None:
    assert ev(text) == expected


DOC_CASES = [
    # strings (values from the ARM function reference)
    (
        "[format('{0}, {1}. Formatted number: {2:N0}', 'Hello', 'User', "
        "parameters('numberToFormat'))]",
        "Hello, User. Formatted number: 8,175,133",
    ),
    ("[base64('one, two, three')]", "b25lLCB0d28sIHRocmVl"),
    ("[base64ToString('b25lLCB0d28sIHRocmVl')]", "one, two, three"),
    ('[base64ToJson(base64(\'{"one": "a", "two": "b"}\'))]', {"one": "a", "two": "b"}),
    ("[dataUri('Hello')]", "data:text/plain;charset=utf8;base64,SGVsbG8="),
    ("[dataUriToString('data:;base64,SGVsbG8sIFdvcmxkIQ==')]", "Hello, World!"),
    ("[indexOf('test', 't')]", 0),
    ("[lastIndexOf('test', 't')]", 3),
    ("[indexOf('abcdef', 'CD')]", 2),
    ("[lastIndexOf('abcdef', 'AB')]", 0),
    ("[indexOf('abcdef', 'z')]", -1),
    ("[startsWith('abcdef', 'AB')]", True),
    ("[endsWith('abcdef', 'EF')]", True),
    ("[contains('OneTwoThree', 'e')]", True),
    ("[contains('OneTwoThree', 'z')]", False),
    ("[padLeft('123', 10, '0')]", "0000000123"),
    ("[padLeft(7, 3)]", "  7"),
    ("[replace('123-123-1234', '-', '')]", "1231231234"),
    ("[replace('123-123-1234', '1234', 'xxxx')]", "123-123-xxxx"),
    ("[split('one,two,three', ',')]", ["one", "two", "three"]),
    ("[split('one;two,three', createArray(',', ';'))]", ["one", "two", "three"]),
    ("[join(createArray('a', 'b', 3), '-')]", "a-b-3"),
    ("[substring('one two three', 4, 3)]", "two"),
    ("[substring('abc', 1)]", "bc"),
    ("[toUpper('one two three')]", "ONE TWO THREE"),
    ("[trim('  one two three  ')]", "one two three"),
    (
        "[string(createObject('valueA', 10, 'valueB', 'Example Text'))]",
        '{"valueA":10,"valueB":"Example Text"}',
    ),
    ("[string(createArray('a', 'b', 'c'))]", '["a","b","c"]'),
    ("[string(5)]", "5"),
    ("[string(true())]", "True"),
    ("[string(null())]", ""),
    ("[concat('a', 1, false())]", "a1False"),
    ("[uri('http://contoso.org/firstpath', 'myscript.sh')]", "http://contoso.org/myscript.sh"),
    (
        "[uri('http://contoso.org/firstpath/', 'myscript.sh')]",
        "http://contoso.org/firstpath/myscript.sh",
    ),
    (
        "[uri('http://contoso.org/a/azuredeploy.json/', 'b.sh')]",
        "http://contoso.org/a/azuredeploy.json/b.sh",
    ),
    (
        "[uriComponent('http://contoso.com/resources/nested/azuredeploy.json')]",
        "http%3A%2F%2Fcontoso.com%2Fresources%2Fnested%2Fazuredeploy.json",
    ),
    ("[uriComponentToString('http%3A%2F%2Fcontoso.com%2Fa')]", "http://contoso.com/a"),
    ("[format('{0:D3}|{1,5}|{1,-5}|{{x}}', 7, 'ab')]", "007|   ab|ab   |{x}"),
    ("[format('{0:N}|{0:F1}|{0:X}|{0:x4}|{0:E2}', 1234)]", "1,234.00|1234.0|4D2|04d2|1.23E+003"),
    (
        "[format('{0:0000}|{0:#,##0.00}|{0:P0}|{1:0.#}|{2}', 1234, json('2.675'), true())]",
        "1234|1,234.00|123,400 %|2.7|True",
    ),
    ("[format('{0:D2}', -5)]", "-05"),
    # numbers and logic
    ("[add(5, -3)]", 2),
    ("[sub(7, 9)]", -2),
    ("[mul(-4, 3)]", -12),
    ("[div(-7, 2)]", -3),
    ("[div(7, -2)]", -3),
    ("[mod(-7, 2)]", -1),
    ("[mod(7, -2)]", 1),
    ("[min(createArray(0, 3, 2))]", 0),
    ("[max(0, 3, 2)]", 3),
    ("[int('4')]", 4),
    ("[int(' -12 ')]", -12),
    ("[bool('TRUE')]", True),
    ("[bool(0)]", False),
    ("[not(equals(1, 2))]", True),
    ("[or(bool('true'), bool('false'))]", True),
    ("[and(true(), false())]", False),
    ("[equals(1, true())]", False),
    ("[equals(createObject('a', createArray(1)), json('{\"a\":[1]}'))]", True),
    ("[equals('a', 'A')]", False),
    ("[greater('A', 'a')]", True),
    ("[less('A', 'a')]", False),
    ("[lessOrEquals(2, 2)]", True),
    ("[greaterOrEquals('b', 'a')]", True),
    ("[coalesce(null(), null(), 'x', 'y')]", "x"),
    ("[if(equals('a', 'a'), json('{\"test\": \"value1\"}'), json('null'))]", {"test": "value1"}),
    # arrays and objects
    ("[array('efgh')]", ["efgh"]),
    ("[createArray()]", []),
    ("[concat(createArray('1-1'), createArray('2-1', '2-2'))]", ["1-1", "2-1", "2-2"]),
    ("[contains(createObject('one', 'a'), 'ONE')]", True),
    ("[contains(createArray('one', 'two'), 'One')]", False),
    ("[empty(createObject())]", True),
    ("[empty('')]", True),
    ("[first(createArray('one', 'two'))]", "one"),
    ("[first('One Two Three')]", "O"),
    ("[last('One Two Three')]", "e"),
    ("[first(createArray())]", None),
    ("[take(createArray('one', 'two', 'three'), 2)]", ["one", "two"]),
    ("[skip('one two three', 4)]", "two three"),
    ("[take('abc', -1)]", ""),
    ("[skip(createArray(1, 2), 5)]", []),
    ("[length(createObject('a', 1, 'b', 2))]", 2),
    ("[range(5, 3)]", [5, 6, 7]),
    (
        "[union(createArray('one', 'two', 'three'), createArray('three', 'four'))]",
        ["one", "two", "three", "four"],
    ),
    (
        '[union(json(\'{"property":{"one":"a","three":"c1"},"nestedArray":[1,2]}\'), '
        'json(\'{"property":{"three":"c2","four":"d"},"nestedArray":[3,4]}\'))]',
        {"property": {"one": "a", "three": "c2", "four": "d"}, "nestedArray": [3, 4]},
    ),
    (
        '[intersection(json(\'{"one":"a","two":"b","three":"c"}\'), '
        'json(\'{"one":"a","two":"z","three":"c"}\'))]',
        {"one": "a", "three": "c"},
    ),
    (
        "[intersection(createArray('one', 'two', 'three'), createArray('two', 'three'))]",
        ["two", "three"],
    ),
    (
        '[items(json(\'{"item002":{"n":2},"item001":{"n":1}}\'))]',
        [{"key": "item001", "value": {"n": 1}}, {"key": "item002", "value": {"n": 2}}],
    ),
    ("[objectKeys(createObject('b', 1, 'a', 2))]", ["b", "a"]),
    (
        "[shallowMerge(createArray(createObject('a', 1, 'b', createObject('x', 1)), "
        "createObject('b', createObject('y', 2))))]",
        {"a": 1, "b": {"y": 2}},
    ),
    ("[flatten(createArray(createArray(1, 2), createArray(), createArray(3)))]", [1, 2, 3]),
    ("[tryGet(parameters('settings'), 'tier', 'list', 1)]", 20),
    ("[tryGet(parameters('settings'), 'missing', 'list')]", None),
    ("[parameters('settings').tier.LIST[2]]", 30),
    ("[parameters('settings')['Tier'].?nothing]", None),
    ("[indexOf(createArray('a', 1, 'a'), 'a')]", 0),
    ("[lastIndexOf(createArray('a', 1, 'a'), 'a')]", 2),
    (
        "[createObject('intProp', 1, 'arrayProp', createArray('a'))]",
        {"intProp": 1, "arrayProp": ["a"]},
    ),
    # dates (lbsim's clock is fixed)
    ("[utcNow()]", "20250101T000000Z"),
    ("[utcNow('d')]", "01/01/2025"),
    ("[utcNow('M d')]", "1 1"),
    ("[utcNow('yyyy-MM-ddTHH:mm:ss.fffK dddd MMM')]", "2025-01-01T00:00:00.000Z Wednesday Jan"),
    ("[dateTimeAdd('2020-04-07 14:53:14Z', 'P3Y')]", "2023-04-07 14:53:14Z"),
    ("[dateTimeAdd('2020-04-07T14:53:14Z', '-P9D', 'u')]", "2020-03-29 14:53:14Z"),
    ("[dateTimeAdd('20200131T000000Z', 'P1MT1H30M')]", "20200229T013000Z"),
    ("[dateTimeFromEpoch(1683040573)]", "2023-05-02T15:16:13Z"),
    ("[dateTimeToEpoch('2023-05-02T15:16:13Z')]", 1683040573),
    # CIDR
    (
        "[parseCidr('10.144.0.0/20')]",
        {
            "network": "10.144.0.0",
            "netmask": "255.255.240.0",
            "broadcast": "10.144.15.255",
            "firstUsable": "10.144.0.1",
            "lastUsable": "10.144.15.254",
            "cidr": 20,
        },
    ),
    ("[parseCidr('fdad:3236:5555::/48').lastUsable]", "fdad:3236:5555:ffff:ffff:ffff:ffff:ffff"),
    ("[cidrSubnet('10.144.0.0/20', 24, 4)]", "10.144.4.0/24"),
    ("[cidrSubnet('fdad:3236:5555::/48', 52, 2)]", "fdad:3236:5555:2000::/52"),
    ("[cidrHost('10.144.3.0/24', 0)]", "10.144.3.1"),
    ("[cidrHost('fdad:3236:5555:3000::/52', 4)]", "fdad:3236:5555:3000::5"),
    # lambdas (the ARM lambda reference's examples)
    (
        "[filter(variables('dogs'), "
        "lambda('dog', greaterOrEquals(lambdaVariables('dog').age, 5)))]",
        [DOGS[0], DOGS[3]],
    ),
    (
        "[map(variables('dogs'), lambda('dog', lambdaVariables('dog').name))]",
        ["Evie", "Casper", "Indy", "Kira"],
    ),
    (
        "[map(range(0, 3), lambda('x', 'i', "
        "concat(string(lambdaVariables('x')), '@', string(lambdaVariables('i')))))]",
        ["0@0", "1@1", "2@2"],
    ),
    (
        "[reduce(map(variables('dogs'), lambda('d', lambdaVariables('d').age)), 1, "
        "lambda('cur', 'next', add(lambdaVariables('cur'), lambdaVariables('next'))))]",
        19,
    ),
    (
        "[map(sort(variables('dogs'), lambda('a', 'b', "
        "less(lambdaVariables('a').age, lambdaVariables('b').age))), "
        "lambda('d', lambdaVariables('d').name))]",
        ["Indy", "Casper", "Evie", "Kira"],
    ),
    (
        "[toObject(variables('dogs'), lambda('e', lambdaVariables('e').name), "
        "lambda('e', lambdaVariables('e').age))]",
        {"Evie": 5, "Casper": 3, "Indy": 2, "Kira": 8},
    ),
    (
        "[groupBy(createArray('foo', 'bar', 'baz'), "
        "lambda('x', substring(lambdaVariables('x'), 0, 1)))]",
        {"f": ["foo"], "b": ["bar", "baz"]},
    ),
    (
        "[mapValues(createObject('a', 1, 'b', 2), lambda('v', mul(lambdaVariables('v'), 10)))]",
        {"a": 10, "b": 20},
    ),
    (
        "[map(createArray(1, 2), lambda('x', map(createArray(10), "
        "lambda('y', add(lambdaVariables('x'), lambdaVariables('y'))))))]",
        [[11], [12]],
    ),
]


@pytest.mark.parametrize(("text", "expected"), DOC_CASES)
def test_documented_behaviour(text: str, expected: Any) -> None:
    assert ev(text) == expected


SCOPE_CASES = [
    (
        "[resourceGroup()]",
        {
            "id": RG_ID,
            "name": "rg1",
            "type": "Microsoft.Resources/resourceGroups",
            "location": "westus2",
            "tags": {},
            "properties": {"provisioningState": "Succeeded"},
        },
    ),
    ("[subscription().id]", f"/subscriptions/{SUB}"),
    ("[tenant().id]", f"/tenants/{SUB}"),
    ("[deployment().name]", "deployment1"),
    ("[deployment().properties.mode]", "Incremental"),
    ("[environment().authentication.loginEndpoint]", "https://login.microsoftonline.com/"),
    ("[copyIndex()]", 2),
    ("[copyIndex('rules')]", 1),
    ("[copyIndex('rules', 10)]", 11),
    (
        "[resourceId('other-rg', 'Microsoft.Storage/storageAccounts', 'sa')]",
        f"/subscriptions/{SUB}/resourceGroups/other-rg/providers/Microsoft.Storage/storageAccounts/sa",
    ),
    (
        "[resourceId('11111111-1111-1111-1111-111111111111', 'other', "
        "'Microsoft.SQL/servers/databases', 's', 'd')]",
        "/subscriptions/11111111-1111-1111-1111-111111111111/resourceGroups/other/providers/Microsoft.SQL/servers/s/databases/d",
    ),
    (
        "[subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'r1')]",
        f"/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/r1",
    ),
    (
        "[subscriptionResourceId('s2', 'Microsoft.Resources/resourceGroups', 'g')]",
        "/subscriptions/s2/providers/Microsoft.Resources/resourceGroups/g",
    ),
    (
        "[tenantResourceId('Microsoft.Authorization/policyDefinitions', 'p')]",
        "/providers/Microsoft.Authorization/policyDefinitions/p",
    ),
    (
        "[managementGroupResourceId('mg1', 'Microsoft.Authorization/policyDefinitions', 'p')]",
        "/providers/Microsoft.Management/managementGroups/mg1/providers/Microsoft.Authorization/policyDefinitions/p",
    ),
    (
        "[extensionResourceId(resourceGroup().id, 'Microsoft.Authorization/locks', 'lock1')]",
        f"{RG_ID}/providers/Microsoft.Authorization/locks/lock1",
    ),
    ("[pickZones('Microsoft.Compute', 'virtualMachines', 'westus2')]", ["1"]),
    ("[pickZones('Microsoft.Network', 'publicIPAddresses', 'westus2', 2, 1)]", ["2", "3"]),
    ("[pickZones('Microsoft.Compute', 'virtualMachines', 'West Europe', 3)]", ["1", "2", "3"]),
    ("[pickZones('Microsoft.Compute', 'virtualMachines', 'westus')]", []),  # no zones there
    ("[pickZones('Microsoft.Compute', 'virtualMachineScaleSets', 'northcentralus', 2)]", []),
    ("[[test value]", "[test value]"),
    ("[test] value", "[test] value"),
    ("plain", "plain"),
]


@pytest.mark.parametrize(("text", "expected"), SCOPE_CASES)
def test_scope_and_resource_functions(text: str, expected: Any) -> None:
    assert ev(text) == expected


ERROR_CASES = [
    ("[nope()]", "The template function 'nope' is not valid"),
    ("[concat(]", "Unable to parse language expression"),
    ("[add(1)]", "'add': the function requires exactly 2 argument(s) but 1 were provided"),
    (
        "[substring('1234567890', 0, 11)]",
        "The index parameter: '0', the length parameter: '11', "
        "the length of the string parameter: '10'",
    ),
    (
        "[parameters('settings').tier.colour]",
        "property 'colour' doesn't exist, available properties are 'size, list'",
    ),
    ("[createArray(1)[3]]", "array index '3' is out of bounds"),
    ("['abc'.length]", "can't be evaluated"),
    (
        "[resourceId('Microsoft.Sql/servers/databases', 'server/db')]",
        "exactly one multi-segmented argument",
    ),
    (
        "[resourceId('Microsoft.Compute/virtualMachines/extensions', 'vm')]",
        "requires '2' resource name argument(s)",
    ),
    ("[resourceId('Microsoft.Compute/virtualMachines')]", "at least 2 argument(s)"),
    ("[resourceId('a', 'b', 'c', 'Microsoft.Compute/virtualMachines', 'vm')]", "at most 2"),
    ("[uniqueString(1)]", "all arguments must be strings"),
    ("[div(1, 0)]", "Attempted to divide by zero"),
    ("[add(9223372036854775807, 1)]", "does not fit in a 64-bit integer"),
    ("[concat('a', createArray())]", "either all arrays or all strings"),
    (
        "[toLower(1)]",
        "argument 1 must be of type 'String', but the provided value is of type 'Integer'",
    ),
    ("[if('yes', 1, 2)]", "must be of type 'Boolean'"),
    ("[not(1)]", "must be of type 'Boolean'"),
    ("[less(1, 'a')]", "both be integers or both be strings"),
    ("[json('{bad')]", "not valid JSON"),
    ("[base64ToString('###')]", "not valid base64"),
    ("[int('12a')]", "not a valid integer"),
    ("[bool('yes')]", "cannot be converted to a boolean"),
    ("[range(0, 10001)]", "between 0 and 10000"),
    ("[format('{1}', 'a')]", "Index (zero based)"),
    ("[format('{0', 'a')]", "Input string was not in a correct format"),
    ("[uri('relative/path', 'x')]", "is not an absolute URI"),
    ("[createObject('a')]", "even number of arguments"),
    ("[lambda('x', 1)]", "A lambda can only be passed"),
    ("[map(createArray(1), 'x')]", "argument 2 must be a lambda expression"),
    ("[sort(createArray(1, 2), lambda('a', true()))]", "must have 2 parameter(s), not 1"),
    ("[filter(createArray(1), lambda('x', 1))]", "must return a boolean"),
    ("[lambdaVariables('x')]", "'x' is not a variable of an enclosing lambda"),
    ("[copyIndex('other')]", "copyIndex('other') outside its loop"),
    ("[parameters('missing')]", "The parameter 'missing' is not defined"),
    ("[pickZones('Microsoft.Compute', 'virtualMachines', 'westus2', 3, 1)]", "must not exceed"),
    ("[dateTimeAdd('yesterday', 'P1D')]", "not a valid ISO 8601 date"),
    ("[dateTimeAdd('2020-01-01T00:00:00Z', 'P')]", "not a valid ISO 8601 duration"),
    ("[utcNow('Q')]", "'Q' is not a valid date and time format"),
    ("[cidrHost('10.0.0.0/30', 2)]", "outside the usable addresses"),
    ("[parseCidr('10.0.0.300/8')]", "not a valid IP address range"),
    ("[managementGroup()]", "management group deployment"),
    ("[contoso.missing()]", "The template function 'contoso.missing' is not defined"),
]


@pytest.mark.parametrize(("text", "fragment"), ERROR_CASES)
def test_errors_are_invalid_template_at_the_given_pointer(text: str, fragment: str) -> None:
    assert fragment in fails(text).message


def test_function_errors_name_the_function_as_written() -> None:
    message = fails("[SubString('abc', 5)]").message
    assert message.startswith("Unable to evaluate template language function 'SubString': ")


def test_if_evaluates_only_the_branch_it_takes() -> None:
    ctx = make_context()
    assert ev("[if(true(), 'yes', parameters('missing'))]", ctx) == "yes"
    assert ev("[if(false(), reference('nowhere'), 'no')]", ctx) == "no"
    assert not any(call.startswith("reference") for call in ctx.calls)


def test_and_or_stop_at_the_deciding_argument() -> None:
    assert ev("[and(false(), parameters('missing'))]") is False
    assert ev("[or(true(), parameters('missing'))]") is True
    assert "The parameter 'missing'" in fails("[and(true(), parameters('missing'))]").message


def test_lambda_bodies_run_once_per_element() -> None:
    ctx = make_context()
    ev("[map(range(0, 4), lambda('i', parameters('lbName')))]", ctx)
    assert ctx.calls.count("parameters:lbName") == 4


def test_reference_and_list_arguments_reach_the_context() -> None:
    ctx = make_context(references={"x": {"a": 1}})
    assert ev("[reference('x', '2020-01-01', 'Full').a]", ctx) == 1
    assert ev("[reference('x').a]", ctx) == 1
    assert ev("[listSecrets(variables('accountid'), '2021-01-01').keys[0].value]", ctx) == "KEY1"
    assert ctx.calls == [
        "reference:x:2020-01-01:True",
        "reference:x:None:False",
        "variables:accountid",
        "list:/sub/x/storageAccounts/store1:2021-01-01",
    ]
    assert "'Full'" in fails("[reference('x', '1', 'Partial')]", ctx).message


def test_runtime_placeholders_absorb_property_and_index_access() -> None:
    ctx = make_context(
        references={"vm": RuntimeObject({"id": "abc"})},
        keys={"/sub/x/storageAccounts/store1": Placeholder("<keys>")},
    )
    assert ev("[reference('vm').id]", ctx) == "abc"
    missing = ev("[reference('vm').identity.principalId]", ctx)
    assert isinstance(missing, Placeholder)
    assert missing == "<runtime value identity>.principalId"
    value = ev("[listKeys(variables('accountid'), '1').keys[0].value]", ctx)
    assert value == "<keys>.keys.0.value"
    assert ev("[concat('k=', listKeys(variables('accountid'), '1').key1)]", ctx) == "k=<keys>.key1"


def test_providers_returns_a_placeholder_and_warns() -> None:
    ctx = make_context()
    assert ev("[providers('Microsoft.Web', 'sites').locations]", ctx) == ["westus2"]
    assert ctx.warnings[0][0] == "DeprecatedFunction"


def test_providers_gives_an_api_version_that_templates_can_pick() -> None:
    ctx = make_context()
    version = ev("[providers('Microsoft.Compute', 'virtualMachines').apiVersions[0]]", ctx)
    assert version == "2024-07-01"
    assert ev("[first(providers('Contoso.Widgets', 'gadgets').apiVersions)]", ctx) == "2022-09-01"
    assert "2024-07-01" in ctx.warnings[0][1]


def test_new_guid_is_deterministic_per_location() -> None:
    first = evaluate_string("[newGuid()]", make_context(), Pointer.parse("/parameters/a"))
    again = evaluate_string("[newGuid()]", make_context(), Pointer.parse("/parameters/a"))
    other = evaluate_string("[newGuid()]", make_context(), Pointer.parse("/parameters/b"))
    assert first == again != other
    assert first[14] == "5"


def test_utc_now_uses_the_deployment_timestamp_when_given() -> None:
    ctx = make_context(properties={"timestamp": "2024-02-29T13:14:15Z"})
    assert ev("[utcNow('u')]", ctx) == "2024-02-29 13:14:15Z"
    assert ev("[deployment().properties.timestamp]", ctx) == "2024-02-29T13:14:15Z"


def _user_function(
    name: str, params: tuple[tuple[str, str], ...], output: Any, kind: str
) -> UserFunction:
    return UserFunction("contoso", name, params, kind, output)


def test_user_defined_functions_see_their_own_parameters() -> None:
    unique = _user_function(
        "uniqueName",
        (("namePrefix", "string"),),
        "[concat(toLower(parameters('namePrefix')), uniqueString(resourceGroup().id))]",
        "string",
    )
    pair = _user_function(
        "pair",
        (("a", "int"), ("b", "string")),
        {"first": "[parameters('a')]", "second": ["[contoso.uniqueName(parameters('B'))]"]},
        "object",
    )
    listing = UserFunction("lists", "first", (("a", "array"),), "int", "[first(parameters('a'))]")
    functions = {"contoso.uniquename": unique, "contoso.pair": pair, "lists.first": listing}
    ctx = make_context(functions=functions)
    assert ev("[lists.first(createArray(7, 8))]", ctx) == 7
    assert ev("[contoso.uniqueName('Web')]", ctx) == "websodyxlxvzmr7k"
    assert ev("[Contoso.Pair(1, 'X')]", ctx) == {"first": 1, "second": ["xsodyxlxvzmr7k"]}
    assert "takes 1 argument(s) but 2" in fails("[contoso.uniqueName('a', 'b')]", ctx).message
    assert "must be of type 'string'" in fails("[contoso.uniqueName(1)]", ctx).message


def test_user_defined_functions_cannot_read_variables_or_nest_forever() -> None:
    bad = _user_function("bad", (), "[variables('scriptFolder')]", "string")
    loop = _user_function("loop", (), "[contoso.loop()]", "string")
    ctx = make_context(functions={"contoso.bad": bad, "contoso.loop": loop})
    assert "cannot use variables('scriptFolder')" in fails("[contoso.bad()]", ctx).message
    assert "nest too deeply" in fails("[contoso.loop()]", ctx).message


def test_evaluate_json_walks_nested_values() -> None:
    value = {"a": ["[add(1, 2)]", {"b": "[[x]"}], "c": 5, "d": None}
    assert evaluate_json(value, make_context()) == {"a": [3, {"b": "[x]"}], "c": 5, "d": None}


def test_evaluate_expression_takes_a_parsed_tree() -> None:
    node = parse_expression("[concat(parameters('lbName'), '-fe')]")
    assert evaluate_expression(node, make_context(), AT) == "lb1-fe"


def test_every_function_the_corpus_uses_is_in_the_table() -> None:
    used = {
        "variables", "parameters", "concat", "resourceid", "resourcegroup", "copyindex",
        "tolower", "reference", "uniquestring", "subscription", "equals", "if", "json", "uri",
        "substring", "format", "deployment", "environment", "base64", "empty", "take", "not",
        "bool", "guid", "length", "and", "contains",
    }  # fmt: skip
    assert used <= set(FUNCTIONS)


# --- laws ------------------------------------------------------------------------------------

texts = st.text(max_size=20)


def lit(value: str) -> str:
    return format_expression(StringLiteral(value))[1:-1]


@given(st.lists(texts, min_size=1, max_size=4))
def test_concat_of_strings_joins_and_adds_lengths(parts: list[str]) -> None:
    args = ", ".join(lit(p) for p in parts)
    assert ev(f"[concat({args})]") == "".join(parts)
    assert ev(f"[length(concat({args}))]") == sum(len(p) for p in parts)


@given(texts)
def test_a_string_literal_evaluates_to_itself(value: str) -> None:
    assert ev(format_expression(StringLiteral(value))) == value
    assert ev(f"[format('{{0}}', {lit(value)})]") == value


@given(st.text(max_size=20).filter(lambda t: not t.startswith("[")))
def test_double_bracket_escapes_a_leading_bracket(rest: str) -> None:
    assert ev(f"[[{rest}]") == f"[{rest}]"


@given(st.integers(-(10**12), 10**12), st.integers(-(10**6), 10**6).filter(bool))
def test_div_and_mod_follow_dotnet(a: int, b: int) -> None:
    quotient, remainder = ev(f"[div({a}, {b})]"), ev(f"[mod({a}, {b})]")
    assert quotient * b + remainder == a
    assert abs(remainder) < abs(b)
    assert remainder == 0 or (remainder < 0) == (a < 0)


@given(texts, st.integers(-3, 25))
def test_take_and_skip_split_a_string(value: str, count: int) -> None:
    assert ev(f"[concat(take({lit(value)}, {count}), skip({lit(value)}, {count}))]") == value


@given(st.lists(st.integers(0, 5), max_size=6), st.lists(st.integers(0, 5), max_size=6))
def test_union_of_arrays_is_the_distinct_elements_in_first_seen_order(
    a: list[int], b: list[int]
) -> None:
    result = ev(f"[union(json('{a}'), json('{b}'))]")
    assert result == list(dict.fromkeys(a + b))
    assert ev(f"[union(json('{result}'), json('{result}'))]") == result


@given(st.text(max_size=20), st.sampled_from([",", ";", "--"]))
def test_join_undoes_split(value: str, delimiter: str) -> None:
    assert ev(f"[join(split({lit(value)}, '{delimiter}'), '{delimiter}')]") == value
